-- The custom actions Argo CD offers on a ModelRollout, enabled when the operator would act on
-- them (engine/machine.py _apply_command): promote and abort while a candidate is in flight,
-- retry after a rollback.
local actions = {}
local phase = "Pending"
if obj.status ~= nil and obj.status.phase ~= nil then
  phase = obj.status.phase
end
local in_flight = phase == "Progressing" or phase == "Paused"
actions["promote"] = {["disabled"] = not in_flight}
actions["abort"] = {["disabled"] = not in_flight}
actions["retry"] = {["disabled"] = phase ~= "RolledBack"}
return actions
