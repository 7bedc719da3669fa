"""Every policy in examples/ and policies/ passes `moonswitch --check`."""
import os
import subprocess
import sys

src = os.environ.get("MOON_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
binary = os.environ.get("MOONSWITCH", os.path.join(src, "build", "moonswitch"))

dirs = [os.path.join(src, "policies")]
examples = os.path.join(src, "examples")
dirs += sorted(os.path.join(examples, d) for d in os.listdir(examples)
               if os.path.isdir(os.path.join(examples, d)))

failed = 0
for d in dirs:
    p = subprocess.run([binary, "--check", "--policies", d], capture_output=True, text=True,
                       timeout=30)
    ok = p.returncode == 0 and "ok" in p.stdout
    print(("ok   " if ok else "FAIL ") + os.path.relpath(d, src), p.stdout.strip(), p.stderr.strip())
    failed += not ok
if len(dirs) < 2:
    print("FAIL no examples found")
    failed += 1
sys.exit(1 if failed else 0)
