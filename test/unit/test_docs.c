/* The documentation covers the interface: every field of every policy kind
 * (walked from the schemas in core/config.c), every global the Lua API
 * puts in a policy state and every field of its tables, the fields of the
 * objects handed to policies (call handles, the call of route() and
 * on_failure(), the attempt, gateway handles, CDRs) and the hooks a policy
 * may define, each named in README.md or docs/scripting.md. Adding one
 * without a word for operators fails here. */
#include "check.h"

#include "calls.h"
#include "cdr.h"
#include "config.h"
#include "runtime.h"
#include "store.h"

#include <lauxlib.h>
#include <lualib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *docs; /* README.md and docs/scripting.md, one after the other */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

static void load_docs(void)
{
    const char *src = getenv("MOON_SOURCE_DIR");
    char path[1024];
    if (!src)
        src = ".";
    snprintf(path, sizeof path, "%s/README.md", src);
    char *readme = slurp(path);
    snprintf(path, sizeof path, "%s/docs/scripting.md", src);
    char *scripting = slurp(path);
    CHECK(readme && scripting);
    size_t a = readme ? strlen(readme) : 0, b = scripting ? strlen(scripting) : 0;
    docs = calloc(1, a + b + 2);
    if (readme)
        memcpy(docs, readme, a);
    docs[a] = '\n';
    if (scripting)
        memcpy(docs + a + 1, scripting, b);
    free(readme);
    free(scripting);
}

/* Whether the docs hold `fmt` (one %s) with `name`. */
static bool mentioned(const char *fmt, const char *name)
{
    char want[256];
    snprintf(want, sizeof want, fmt, name);
    return strstr(docs, want) != NULL;
}

static void missing(const char *what, const char *name)
{
    fprintf(stderr, "undocumented %s: %s (README.md, docs/scripting.md)\n", what, name);
    check_failures++;
}

/* ---- The DSL ---------------------------------------------------------------- */

static void fields_documented(const char *kind, const struct field *fields)
{
    for (const struct field *f = fields; f->name; f++) {
        if (f->type == FT_SECTION) {
            fields_documented(kind, f->section);
            continue;
        }
        char what[128];
        snprintf(what, sizeof what, "%s field", kind);
        if (!mentioned("`%s`", f->name))
            missing(what, f->name);
    }
}

static void policy_fields(void)
{
    for (int k = 0; k < KIND_COUNT; k++) {
        const struct kind_schema *s = config_schema((enum config_kind)k);
        if (!mentioned("`%s", s->keyword))
            missing("policy kind", s->keyword);
        fields_documented(s->keyword, s->fields);
    }
}

/* ---- The Lua API ------------------------------------------------------------ */

static lua_State *plain;    /* a state with the standard libraries only */
static struct luart *rt;    /* a policy state with the API */
static struct store *store; /* one CDR in it */

static void open_runtime(void)
{
    const char *tmp = getenv("MOON_TEST_TMP");
    char dir[1024], data[1100];
    snprintf(dir, sizeof dir, "%s/docs-%d", tmp ? tmp : "/tmp", (int)getpid());
    mkdir(tmp ? tmp : "/tmp", 0700);
    mkdir(dir, 0700);
    snprintf(data, sizeof data, "%s/data", dir);
    mkdir(data, 0700);
    CHECK(store_open(&store, NULL, data, 0) == 0);
    struct cdr r = {.start = 1, .answer = 2, .stop = 3, .duration = 1, .status = 200};
    snprintf(r.caller, sizeof r.caller, "1001");
    CHECK(cdr_write(store, &r) == 0);
    static struct luahost host;
    host = (struct luahost){.budget = 1.0, .store = store};
    char err[512];
    rt = luart_load(&host, dir, err, sizeof err); /* no files: an empty policy */
    if (!rt)
        fprintf(stderr, "luart_load: %s\n", err);
    CHECK(rt != NULL);
    plain = luaL_newstate();
    luaL_openlibs(plain);
}

/* Every key of the table at the top of L, documented as "prefix.key" or
 * "prefix:key". */
static void keys_documented(lua_State *L, const char *prefix, const char *what)
{
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            continue;
        char name[256];
        snprintf(name, sizeof name, "%s.%s", prefix, lua_tostring(L, -1));
        char method[256];
        snprintf(method, sizeof method, "%s:%s", prefix, lua_tostring(L, -1));
        if (!mentioned("%s", name) && !mentioned("%s", method))
            missing(what, name);
    }
}

static void api_globals(void)
{
    if (!rt)
        return;
    lua_State *L = luart_state(rt);
    lua_pushvalue(L, LUA_GLOBALSINDEX);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 1);
            continue;
        }
        const char *name = lua_tostring(L, -2);
        lua_getglobal(plain, name);
        bool standard = !lua_isnil(plain, -1);
        lua_pop(plain, 1);
        if (!standard && !mentioned("`%s", name))
            missing("global", name);
        if (!standard && lua_istable(L, -1))
            keys_documented(L, name, "field of a global");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void list_documented(const char *const *fields, const char *prefix,
                            const char *what)
{
    for (size_t i = 0; fields[i]; i++) {
        char dot[128], colon[128];
        snprintf(dot, sizeof dot, "%s.%s", prefix, fields[i]);
        snprintf(colon, sizeof colon, "%s:%s(", prefix, fields[i]);
        if (!mentioned("%s", dot) && !mentioned("%s", colon))
            missing(what, dot);
    }
}

static void object_fields(void)
{
    list_documented(calls_handle_fields, "call", "field of calls[id]");
    list_documented(call_policy_fields, "call", "field of route()'s call");
    list_documented(call_attempt_fields, "attempt", "field of on_failure()'s attempt");
    list_documented(gateway_handle_fields, "gw", "field of gateways[name]");
}

static void cdr_fields(void)
{
    if (!rt)
        return;
    lua_State *L = luart_state(rt);
    CHECK(luaL_dostring(L, "return cdrs.last(1)[1]") == 0);
    CHECK(lua_istable(L, -1));
    if (lua_istable(L, -1))
        keys_documented(L, "cdr", "CDR field");
    lua_settop(L, 0);
}

static void hooks(void)
{
    static const char *const names[] = {"route(call)",      "on_failure(call, attempt)",
                                        "on_call_end(cdr)", "on_request(req)",
                                        "on_register(reg)", NULL};
    for (size_t i = 0; names[i]; i++)
        if (!mentioned("function %s", names[i]))
            missing("hook", names[i]);
}

static void close_all(void)
{
    if (rt)
        luart_retire(rt);
    luart_close_all();
    if (plain)
        lua_close(plain);
    store_close(store);
    free(docs);
}

static void setup(void)
{
    load_docs();
    open_runtime();
}

TEST_MAIN(CASE(setup), CASE(policy_fields), CASE(api_globals), CASE(object_fields),
          CASE(cdr_fields), CASE(hooks), CASE(close_all))
