"""moonswitch --check: exit 0 on good policies; exit 1 with file:line on each
kind of mistake."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SOURCE_DIR, check, check_eq, run_check, run_tests  # noqa: E402

HEADER = "-- test policy\n-- (comments keep the definitions off line 1)\n\n"  # 3 lines


def with_defaults(files):
    """The default policies plus `files`."""
    out = {}
    src = os.path.join(SOURCE_DIR, "policies")
    for name in sorted(os.listdir(src)):
        if name.endswith(".lua"):
            with open(os.path.join(src, name)) as f:
                out[name] = f.read()
    out.update(files)
    return out


REG_OK = 'registration "ok" { server = "192.0.2.1", username = "u", password = "p" }\n'

# (label, {file: text}, file:line that must appear, further words that must appear)
CASES = [
    ("unknown field",
     {"10-carriers.lua": HEADER + REG_OK +
      'registration "a" { server = "192.0.2.1", username = "u", password = "p", '
      'colour = "blue" }\n'},
     "10-carriers.lua:5", ["colour"]),
    ("unknown field, multi-line definition",
     {"10-carriers.lua": HEADER +
      'registration "a" {\n  server = "192.0.2.1",\n  sever = "x",\n'
      '  username = "u", password = "p",\n}\n'},
     ("10-carriers.lua:4", "10-carriers.lua:6"), ["sever"]),
    ("missing required field",
     {"10-carriers.lua": HEADER + 'registration "a" { username = "u", password = "p" }\n'},
     "10-carriers.lua:4", ["server"]),
    ("wrong type",
     {"10-carriers.lua": HEADER + REG_OK +
      'registration "a" { server = "192.0.2.1", port = "x", username = "u", '
      'password = "p" }\n'},
     "10-carriers.lua:5", ["port"]),
    ("port out of range",
     {"10-carriers.lua": HEADER +
      'registration "a" { server = "192.0.2.1", port = 70000, username = "u", '
      'password = "p" }\n'},
     "10-carriers.lua:4", ["port"]),
    ("expires out of range",
     {"10-carriers.lua": HEADER +
      'registration "a" { server = "192.0.2.1", username = "u", password = "p", '
      'expires = 5 }\n'},
     "10-carriers.lua:4", ["expires"]),
    ("retry_delay out of range",
     {"10-carriers.lua": HEADER + "\n" +
      'registration "a" { server = "192.0.2.1", username = "u", password = "p", '
      'retry_delay = 10 }\n'},
     "10-carriers.lua:5", ["retry_delay"]),
    ("switch.sip.user_agent_retry_delay out of range",
     {"00-switch.lua": HEADER + "switch { sip = { user_agent_retry_delay = 1000 } }\n"},
     "00-switch.lua:4", ["user_agent_retry_delay"]),
    ("bad enum",
     {"10-carriers.lua": HEADER +
      'registration "a" { server = "192.0.2.1", username = "u", password = "p", '
      'mode = "weird" }\n'},
     "10-carriers.lua:4", ["mode", "weird"]),
    ("duplicate name in two files",
     {"10-a.lua": "\n" + REG_OK,
      "20-b.lua": HEADER + "\n" + REG_OK},
     "20-b.lua:5", ["10-a.lua:2", "ok"]),
    ("routing_gateway with a missing registration",
     {"10-carriers.lua": HEADER + REG_OK +
      'routing_gateway "gw" { type = "registration", registration = "nope", '
      'address = "192.0.2.1:5060", prefixes = { "1" } }\n'},
     "10-carriers.lua:5", ["nope"]),
    ("routing_gateway of type registration without one",
     {"10-carriers.lua": HEADER +
      'routing_gateway "gw" { type = "registration", address = "192.0.2.1:5060", '
      'prefixes = { "1" } }\n'},
     "10-carriers.lua:4", ["registration"]),
    ("account with a missing mapping_gateway",
     {"20-accounts.lua": HEADER + 'account "1001" { password = "x", '
      'mapping_gateway = "phones" }\n'},
     "20-accounts.lua:4", ["phones"]),
    ("local_ip the switch does not listen on",
     {"10-carriers.lua": HEADER +
      'registration "a" { server = "192.0.2.1", username = "u", password = "p", '
      'local_ip = "192.0.2.77" }\n'},
     "10-carriers.lua:4", ["local_ip 192.0.2.77 is not one of the listen addresses",
                           "127.0.0.1:5060"]),
    ("Lua syntax error",
     {"10-carriers.lua": HEADER + REG_OK + "\nregistration \"b\" {\n  server = ,\n}\n"},
     "10-carriers.lua:7", []),
    ("Lua runtime error",
     {"10-carriers.lua": HEADER + "local t = nil\nlocal x = t.field\n"},
     "10-carriers.lua:5", []),
]


def test_default_policies_ok():
    rc, out, pol = run_check(None, "check-default")
    check_eq(rc, 0, "--check on the default policies (output %r)" % out)


def test_examples_ok():
    # Every example set-up under examples/ passes too.
    root = os.path.join(SOURCE_DIR, "examples")
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        d = os.path.join(root, name)
        if not os.path.isdir(d):
            continue
        files = {}
        for f in os.listdir(d):
            if f.endswith(".lua"):
                with open(os.path.join(d, f)) as fh:
                    files[f] = fh.read()
        if files:
            rc, out, _ = run_check(files, "check-example")
            check_eq(rc, 0, "--check on examples/%s (output %r)" % (name, out))


def test_good_policy_ok():
    rc, out, _ = run_check(with_defaults({
        "10-carriers.lua": REG_OK +
        'routing_gateway "gw" { type = "registration", registration = "ok", '
        'address = "192.0.2.1:5060", prefixes = { "1" } }\n',
        "20-customers.lua": 'mapping_gateway "phones" { type = "register" }\n'
        'account "1001" { password = "x", mapping_gateway = "phones" }\n',
    }), "check-good")
    check_eq(rc, 0, "--check on a good policy set (output %r)" % out)


def test_local_ip_of_a_listener_ok():
    # local_ip names a UDP listener, or any address when one listens on all.
    reg = ('registration "a" { server = "192.0.2.1", username = "u", password = "p", '
           'local_ip = "%s" }\n')
    for listen, ip in ((["udp:127.0.0.1:5060", "udp:127.0.0.2:5060"], "127.0.0.2"),
                       (["udp:0.0.0.0:5060"], "192.0.2.77")):
        switch = "switch { listen = { %s } }\n" % ", ".join('"%s"' % x for x in listen)
        rc, out, _ = run_check({"00-switch.lua": switch, "10-carriers.lua": reg % ip},
                               "check-local-ip")
        check_eq(rc, 0, "--check with local_ip %s and listen %s (output %r)"
                 % (ip, listen, out))


def test_errors_name_file_and_line():
    failures = []
    for label, files, where, words in CASES:
        rc, out, pol = run_check(with_defaults(files), "check-case")
        wheres = where if isinstance(where, tuple) else (where,)
        problems = []
        if rc != 1:
            problems.append("exit %d, not 1" % rc)
        if not any(re.search(re.escape(w) + r"\b", out) for w in wheres):
            problems.append("no %s" % " or ".join(wheres))
        for w in words:
            if w not in out:
                problems.append("no %r" % w)
        status = "ok" if not problems else "FAIL (%s)" % "; ".join(problems)
        print("  %-48s %s\n      %s" % (label, status, out.strip().replace("\n", "\n      ")))
        if problems:
            failures.append(label)
    check(not failures, "wrong --check result for: %s" % ", ".join(failures))


if __name__ == "__main__":
    run_tests(globals())
