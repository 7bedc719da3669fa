-- Phones register to accounts of a mapping gateway of type "register": the
-- account name is the extension (the user part of To) and the digest user.
mapping_gateway "office-phones" {
  type = "register",
  callee_from = "to",
  caller_from = "from",
  line_limit = 20,
  digest = "sha256,md5",  -- these desk phones answer SHA-256 (RFC 8760); MD5 stays offered
}

account "1001" { password = "correct-horse-1001", mapping_gateway = "office-phones" }
account "1002" { password = "battery-staple-1002", mapping_gateway = "office-phones" }
account "1003" { password = "tr0ub4dor-1003", mapping_gateway = "office-phones" }

-- A gateway with FXS ports registers like a phone.
-- Its firmware fails on any SHA-256 challenge: it is offered MD5 only.
account "fxs-lobby" { password = "lobby-fxs-secret", mapping_gateway = "office-phones",
                      digest = "md5" }
