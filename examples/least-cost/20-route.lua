-- Least-cost routing and number formats, decided for each call.
--
--   caller: national 0... becomes 44..., +44... loses its +; a caller the
--           customer withholds (anonymous) stays as it is
--   callee: 00 (international access) or + removed: E.164 digits
--   route:  the carriers with a rate for the callee in the current time
--           band, cheapest first; carriers can be taken out of service from
--           the REPL with kv.put("lcr:off:carrier-b", "maintenance")
--
-- A carrier that fails with a status in failover_codes (or stays silent)
-- passes the call to the next one, as usual.

local function e164(number)
  return (number:gsub("^00", ""):gsub("^%+", ""))
end

function route(call)
  if call.direction ~= "outbound" then return end  -- carriers' calls: default routing

  local caller = call.caller
  if caller:match("^0[1-9]") then
    call.caller = "44" .. caller:sub(2)
  elseif caller:match("^%+") then
    call.caller = caller:sub(2)
  end

  local callee = e164(call.callee)
  if not callee:match("^%d+$") then return 484, "Address Incomplete" end
  call.callee = callee

  local rates, prefix = rates_for(callee)
  if not rates then return 404, "No Rate" end
  local band = time_band(os.date("*t"))
  local order = {}
  for _, name in ipairs(cheapest(rates[band])) do
    if not kv.get("lcr:off:" .. name) then order[#order + 1] = name end
  end
  if #order == 0 then return 503, "No Carrier" end
  call:set_header("X-LCR", prefix .. "/" .. band)
  return order
end
