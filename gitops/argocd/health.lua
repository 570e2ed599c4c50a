-- Argo CD health of a modelrollout.io/ModelRollout.
-- A status written for an older spec says nothing about the current one, so until the operator
-- has observed the latest generation the rollout counts as Progressing, whatever its phase.
local hs = {}
local waiting = "Waiting for rollout to be observed"

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = waiting
  return hs
end

local status = obj.status
local generation = obj.metadata.generation
if status.observedGeneration == nil or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = waiting
  return hs
end

local phase = status.phase or "Pending"
local message = status.message
if message == nil or message == "" then
  message = "Rollout is " .. phase
end
hs.message = message

if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Paused" then
  -- Suspended, not Degraded: a pause is a step of the rollout or a person's decision.
  hs.status = "Suspended"
elseif phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
else
  -- Pending, Progressing, and any phase a newer operator may add.
  hs.status = "Progressing"
end
return hs
