-- Rates per minute (any currency) by destination prefix, carrier and time
-- band. A carrier missing from a band is not used in that band. The
-- longest prefix that has rates decides.
--
--   peak      Monday to Friday, 08:00 to 19:59
--   offpeak   Monday to Friday, other hours
--   weekend   Saturday and Sunday

RATES = {
  ["44"] = {                                 -- United Kingdom, fixed
    peak    = { ["carrier-a"] = 0.0080, ["carrier-b"] = 0.0095 },
    offpeak = { ["carrier-a"] = 0.0060, ["carrier-b"] = 0.0040 },
    weekend = { ["carrier-a"] = 0.0050, ["carrier-b"] = 0.0045 },
  },
  ["447"] = {                                -- United Kingdom, mobile
    peak    = { ["carrier-c"] = 0.0210, ["carrier-a"] = 0.0250 },
    offpeak = { ["carrier-c"] = 0.0180, ["carrier-a"] = 0.0150 },
    weekend = { ["carrier-c"] = 0.0120 },    -- carrier-a's weekend mobile rate is no deal
  },
  ["49"] = {                                 -- Germany
    peak    = { ["carrier-b"] = 0.0110, ["carrier-c"] = 0.0100 },
    offpeak = { ["carrier-b"] = 0.0070, ["carrier-c"] = 0.0090 },
    weekend = { ["carrier-b"] = 0.0060, ["carrier-c"] = 0.0060 },
  },
  ["1"] = {                                  -- North America
    peak    = { ["carrier-a"] = 0.0050, ["carrier-c"] = 0.0060 },
    offpeak = { ["carrier-a"] = 0.0050, ["carrier-c"] = 0.0040 },
    weekend = { ["carrier-a"] = 0.0040, ["carrier-c"] = 0.0040 },
  },
}

-- The time band of a date table (os.date("*t")).
function time_band(t)
  if t.wday == 1 or t.wday == 7 then return "weekend" end
  if t.hour >= 8 and t.hour < 20 then return "peak" end
  return "offpeak"
end

-- The rates of the longest prefix of `number` that has any, and that prefix.
function rates_for(number)
  for n = #number, 1, -1 do
    local r = RATES[number:sub(1, n)]
    if r then return r, number:sub(1, n) end
  end
end

-- Carrier names of a band's rates, cheapest first (ties by name, so the
-- order is stable).
function cheapest(band_rates)
  local names = {}
  for name in pairs(band_rates or {}) do names[#names + 1] = name end
  table.sort(names, function(x, y)
    if band_rates[x] ~= band_rates[y] then return band_rates[x] < band_rates[y] end
    return x < y
  end)
  return names
end
