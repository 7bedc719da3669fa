-- Called for every successful REGISTER that adds or refreshes a binding;
-- the REGISTER is answered when it returns. Return nothing to accept,
-- false (and a reason) to refuse with 403, or a status number.
--
-- In the REPL:
--   accounts                         -- account, bindings, suspended
--   endpoints("1001")                -- { contact=, expires=, source=, nat= }
--   endpoints.remove("1001")         -- drop its bindings
--   suspensions                      -- suspended accounts and source IPs
--   suspensions.lift("203.0.113.9")  -- or accounts["1001"]:unsuspend()

-- The lobby gateway never moves: refuse it from anywhere but its own LAN.
local fixed_networks = {
  ["fxs-lobby"] = "^192%.168%.10%.",
}

-- Phone models we do not allow (say, one with a known provisioning hole).
local banned_agents = { "^BadPhone 1%." }

function on_register(reg)
  local net = fixed_networks[reg.account]
  if net and not reg.source:match(net) then
    return false, "Wrong Network"
  end
  for _, pattern in ipairs(banned_agents) do
    if reg.user_agent:match(pattern) then
      return 403, "Phone Model Not Allowed"
    end
  end
  -- Remember where each extension last registered from (kept in LMDB).
  kv.put("last-seen/" .. reg.account, reg.source .. " " .. os.time())
end
