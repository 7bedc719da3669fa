/* libFuzzer harness for the policy loader: lua/runtime.c's luart_load(),
 * the DSL (lua/dsl.c) and core/config.c's validation, as `moonswitch
 * --check` runs them (no store, no SIP side).
 *
 * Input: the text of one policy file, written to a temporary directory as
 * 10-fuzz.lua and loaded in-process. The result must be an error message
 * (non-empty: "file:line: message" for what the DSL refuses) or a valid
 * config, which is then compared with a baseline (config_diff(), as a
 * reload does) and counted.
 *
 * Loops are allowed: the runtime's time budget (20 ms here; policy states
 * run in LuaJIT's interpreter, so its hook always fires) stops them. What
 * the budget cannot bound is taken away first by a prelude, 00-prelude.lua,
 * loaded before the input in the same state: the ways out of the sandbox
 * (os, io, debug, package, require, load*, dofile, module, jit, ffi), the
 * long single C calls (string.rep, and find, match, gmatch and gsub, whose
 * backtracking runs in one call), finalizers (newproxy: a __gc runs when
 * the state closes, outside any budget) and print, which only makes
 * noise. Policies are the operator's own code; the harness looks for
 * crashes and undefined behaviour in what the loader does with any of it. */
#include "config.h"
#include "log.h"
#include "runtime.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

static char dir[256], file[300], prelude_file[300];
static struct luahost host;
static struct luart *baseline;

static const char prelude[] =
    "os, io, debug, package, require, load, loadstring, loadfile, dofile, module = nil\n"
    "jit, ffi, newproxy, print, collectgarbage = nil\n"
    "string.rep, string.find, string.match, string.gmatch, string.gsub = nil\n"
    "string.dump = nil\n";

static int write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, size, f);
    fclose(f);
    return w == size ? 0 : -1;
}

static void count(enum diff_verdict verdict, const struct def_head *before,
                  const struct def_head *now, void *arg)
{
    (void)verdict;
    (void)before;
    (void)now;
    (*(unsigned *)arg)++;
}

/* At exit: the runtimes still open (the baseline) close, and the policy
 * files and their directory go. */
static void cleanup(void)
{
    luart_close_all();
    unlink(file);
    unlink(prelude_file);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!getenv("MOON_FUZZ_LOG"))
        log_set_level(LOG_ERROR);
    snprintf(dir, sizeof dir, "%s/fuzz-policy.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(file, sizeof file, "%s/10-fuzz.lua", dir);
    snprintf(prelude_file, sizeof prelude_file, "%s/00-prelude.lua", dir);
    if (write_file(prelude_file, prelude, sizeof prelude - 1) < 0)
        abort();
    atexit(cleanup);
    host.base = event_base_new();
    host.budget = 0.02;
    static const char base_policy[] =
        "switch { sip = { endpoint_expire = 600 } }\n"
        "registration \"carrier-a\" { server = \"192.0.2.10\", username = \"a\",\n"
        "  password = \"p\" }\n"
        "routing_gateway \"carrier-a\" { type = \"registration\", registration = "
        "\"carrier-a\",\n"
        "  address = \"192.0.2.10:5060\", prefixes = { \"1\" } }\n"
        "mapping_gateway \"pbx\" { addresses = { \"198.51.100.7\" } }\n"
        "mapping_gateway \"phones\" { type = \"register\" }\n"
        "account \"1001\" { password = \"s\", mapping_gateway = \"phones\" }\n";
    char err[1024];
    if (write_file(file, base_policy, sizeof base_policy - 1) < 0 ||
        !(baseline = luart_load(&host, dir, err, sizeof err))) {
        fprintf(stderr, "fuzz_policy: baseline: %s\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    if (write_file(file, data, size) < 0)
        abort();
    char err[1024];
    memset(err, 'x', sizeof err);
    struct luart *rt = luart_load(&host, dir, err, sizeof err);
    if (!rt) {
        if (!memchr(err, '\0', sizeof err) || err[0] == '\0') {
            fprintf(stderr, "fuzz_policy: refused without a message\n");
            abort();
        }
        return 0;
    }
    const struct config *cfg = luart_config(rt);
    if (!config_switch(cfg))
        abort(); /* config_finish adds the default switch */
    unsigned seen = 0;
    struct config_diff d = config_diff(luart_config(baseline), cfg, count, &seen);
    if (seen != d.added + d.changed + d.removed + d.unchanged)
        abort();
    char summary[128];
    config_diff_summary(&d, summary, sizeof summary);
    luart_retire(rt);
    return 0;
}
