-- Argo CD action "abort" on a ModelRollout: writes the command annotation exactly as
-- `kubectl modelrollout abort` does (cli.py send_command), never touching spec, so the
-- application does not go OutOfSync. The operator acts once per distinct id.
local action = "abort"

-- Argo CD's Lua has no uuid: the id joins the time, the object's resourceVersion (which every
-- command changes, so two clicks in the same second still differ) and a random number.
local function command_id()
  local version = ""
  if obj.metadata.resourceVersion ~= nil then
    version = tostring(obj.metadata.resourceVersion)
  end
  return string.format("argocd-%x-%s-%04x", os.time(), version, math.random(0, 65535))
end

local function json_string(text)
  local escaped = string.gsub(text, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. escaped .. '"'
end

local command = "{" ..
  '"id": ' .. json_string(command_id()) .. ", " ..
  '"action": ' .. json_string(action) .. ", " ..
  '"at": ' .. json_string(os.date("!%Y-%m-%dT%H:%M:%SZ")) ..
  "}"

if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["modelrollout.io/command"] = command
return obj
