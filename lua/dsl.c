/* The policy DSL: `switch { ... }`, `registration "name" { ... }` and the
 * other constructors. See dsl.h. */
#include "dsl.h"
#include "config.h"

#include <lauxlib.h>

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dsl {
    struct config *cfg;
    char file[1024];
};

static char dsl_key;

static struct dsl *dsl_get(lua_State *L)
{
    lua_pushlightuserdata(L, &dsl_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    struct dsl *d = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return d;
}

void dsl_set_file(lua_State *L, const char *file)
{
    struct dsl *d = dsl_get(L);
    if (d)
        snprintf(d->file, sizeof d->file, "%s", file ? file : "");
}

void dsl_seal(lua_State *L)
{
    struct dsl *d = dsl_get(L);
    if (d)
        d->cfg = NULL;
}

/* Where the policy called the constructor: file and line of the caller. */
static void caller_position(lua_State *L, char *file, size_t filelen, int *line)
{
    lua_Debug ar;
    *line = 0;
    snprintf(file, filelen, "?");
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar))
            break;
        if (ar.currentline > 0 && ar.source && ar.source[0] == '@') {
            snprintf(file, filelen, "%s", ar.source + 1);
            *line = ar.currentline;
            return;
        }
    }
}

struct ctx {
    lua_State *L;
    const struct kind_schema *schema;
    struct def_head *def;
    char where[1200]; /* "file:line: kind \"name\"" */
};

/* Raise the definition's error: "file:line: kind "name": message". */
static int def_error(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int def_error(struct ctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    config_def_free(c->def);
    c->def = NULL;
    lua_pushfstring(c->L, "%s: %s", c->where, msg);
    return lua_error(c->L);
}

#define AT(def, off, type) ((type *)((char *)(def) + (off)))

static const char *type_name(lua_State *L, int idx)
{
    return lua_typename(L, lua_type(L, idx));
}

static void check_int(struct ctx *c, const struct field *f, const char *path, int idx,
                      const char *alt)
{
    lua_State *L = c->L;
    if (lua_type(L, idx) != LUA_TNUMBER) {
        def_error(c, "field '%s' must be %s%sa number from %ld to %ld, not %s", path,
                  alt ? alt : "", alt ? " or " : "", f->min, f->max, type_name(L, idx));
        return;
    }
    double v = lua_tonumber(L, idx);
    if (v != floor(v) || v < (double)f->min || v > (double)f->max)
        def_error(c, "field '%s' must be %s%sa whole number from %ld to %ld, not %.14g",
                  path, alt ? alt : "", alt ? " or " : "", f->min, f->max, v);
}

static char *checked_strdup(struct ctx *c, const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        def_error(c, "out of memory");
    return copy;
}

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Store the function at idx in the registry and fingerprint its code
 * (string.dump without debug info), so a reload can tell if it changed. */
static void set_hook(struct ctx *c, struct config_hook *hook, int idx)
{
    lua_State *L = c->L;
    lua_getglobal(L, "string");
    lua_getfield(L, -1, "dump");
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    char sig[40];
    if (lua_pcall(L, 2, 1, 0) == 0) {
        size_t n;
        const char *code = lua_tolstring(L, -1, &n);
        snprintf(sig, sizeof sig, "%016llx", (unsigned long long)fnv1a(code, n));
    } else {
        /* A C function cannot be dumped; its identity is all we have. */
        snprintf(sig, sizeof sig, "%p", lua_topointer(L, idx));
    }
    lua_pop(L, 2);
    hook->signature = checked_strdup(c, sig);
    lua_pushvalue(L, idx);
    hook->ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void convert_strlist(struct ctx *c, const char *path, int idx, struct strlist *out)
{
    lua_State *L = c->L;
    if (lua_type(L, idx) == LUA_TSTRING) { /* one string is a list of one */
        out->v = calloc(1, sizeof *out->v);
        if (!out->v)
            def_error(c, "out of memory");
        out->v[0] = checked_strdup(c, lua_tostring(L, idx));
        out->n = 1;
        return;
    }
    if (!lua_istable(L, idx))
        def_error(c, "field '%s' must be a list of strings, not %s", path, type_name(L, idx));
    size_t n = lua_objlen(L, idx);
    out->v = calloc(n ? n : 1, sizeof *out->v);
    if (!out->v)
        def_error(c, "out of memory");
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING)
            def_error(c, "field '%s' item %zu must be a string, not %s", path, i,
                      type_name(L, -1));
        out->v[out->n++] = checked_strdup(c, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

static void convert_rewrites(struct ctx *c, const char *path, int idx,
                             struct rewrite_list *out)
{
    lua_State *L = c->L;
    if (!lua_istable(L, idx))
        def_error(c, "field '%s' must be a list of {pattern, replacement} pairs, not %s", path,
                  type_name(L, idx));
    size_t n = lua_objlen(L, idx);
    out->v = calloc(n ? n : 1, sizeof *out->v);
    if (!out->v)
        def_error(c, "out of memory");
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        int pair = lua_gettop(L);
        if (!lua_istable(L, pair) || lua_objlen(L, pair) != 2)
            def_error(c, "field '%s' item %zu must be a {pattern, replacement} pair", path, i);
        lua_rawgeti(L, pair, 1);
        lua_rawgeti(L, pair, 2);
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            def_error(c, "field '%s' item %zu: pattern and replacement must be strings",
                      path, i);
        /* Try the pattern once, so a malformed one fails at load time. */
        lua_getglobal(L, "string");
        lua_getfield(L, -1, "find");
        lua_pushliteral(L, "");
        lua_pushvalue(L, -5);
        if (lua_pcall(L, 2, 0, 0) != 0)
            def_error(c, "field '%s' item %zu: bad pattern '%s': %s", path, i,
                      lua_tostring(L, -4), lua_tostring(L, -1));
        lua_pop(L, 1); /* string */
        struct rewrite_rule *r = &out->v[out->n++];
        r->pattern = checked_strdup(c, lua_tostring(L, -2));
        r->replacement = checked_strdup(c, lua_tostring(L, -1));
        lua_pop(L, 3);
    }
}

/* An array of status codes, each checked like an FT_INT ("sip.failover_codes[2]"
 * names the bad one). Written in the policy, it replaces the default. */
static void convert_status_set(struct ctx *c, const struct field *f, const char *path,
                               int idx, struct status_set *out)
{
    lua_State *L = c->L;
    if (!lua_istable(L, idx))
        def_error(c, "field '%s' must be a list of status codes from %ld to %ld, not %s",
                  path, f->min, f->max, type_name(L, idx));
    size_t n = lua_objlen(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (k != floor(k) || k < 1 || k > (double)n)
            def_error(
                c, "field '%s' must be a list of status codes, not a table with key %s",
                path,
                lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : type_name(L, -1));
    }
    memset(out, 0, sizeof *out);
    out->given = true;
    char item[160];
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        snprintf(item, sizeof item, "%s[%zu]", path, i);
        check_int(c, f, item, lua_gettop(L), NULL);
        status_set_add(out, (int)lua_tointeger(L, -1));
        lua_pop(L, 1);
    }
}

static void convert_fields(struct ctx *c, const struct field *fields, int tbl,
                           const char *prefix);

/* Convert the value at idx into field f of the definition. */
static void convert_field(struct ctx *c, const struct field *f, int idx, const char *path)
{
    lua_State *L = c->L;
    void *def = c->def;
    int t = lua_type(L, idx);
    switch (f->type) {
    case FT_STRING:
        if (t != LUA_TSTRING)
            def_error(c, "field '%s' must be a string, not %s", path, type_name(L, idx));
        *AT(def, f->offset, char *) = checked_strdup(c, lua_tostring(L, idx));
        break;
    case FT_INT:
        check_int(c, f, path, idx, NULL);
        *AT(def, f->offset, int) = (int)lua_tointeger(L, idx);
        break;
    case FT_INT_OR_AUTO:
        if (t == LUA_TSTRING && strcmp(lua_tostring(L, idx), "auto") == 0) {
            *AT(def, f->offset, int) = CONFIG_AUTO;
            break;
        }
        check_int(c, f, path, idx, "\"auto\"");
        *AT(def, f->offset, int) = (int)lua_tointeger(L, idx);
        break;
    case FT_INT_OR_FALSE:
        if (t == LUA_TBOOLEAN && !lua_toboolean(L, idx)) {
            *AT(def, f->offset, int) = 0;
            break;
        }
        check_int(c, f, path, idx, "false");
        *AT(def, f->offset, int) = (int)lua_tointeger(L, idx);
        break;
    case FT_INT_OR_HOOK:
        if (t == LUA_TFUNCTION) {
            set_hook(c, AT(def, f->hook_offset, struct config_hook), idx);
            break;
        }
        check_int(c, f, path, idx, "a function");
        *AT(def, f->offset, int) = (int)lua_tointeger(L, idx);
        break;
    case FT_BOOL:
        if (t != LUA_TBOOLEAN)
            def_error(c, "field '%s' must be true or false, not %s", path, type_name(L, idx));
        *AT(def, f->offset, bool) = lua_toboolean(L, idx);
        break;
    case FT_TRISTATE:
        if (t != LUA_TBOOLEAN)
            def_error(c, "field '%s' must be true, false or nil, not %s", path,
                      type_name(L, idx));
        *AT(def, f->offset, int) = lua_toboolean(L, idx) ? TRI_ON : TRI_OFF;
        break;
    case FT_ENUM_OR_HOOK:
        if (t == LUA_TFUNCTION) {
            set_hook(c, AT(def, f->hook_offset, struct config_hook), idx);
            break;
        }
        __attribute__((fallthrough)); /* else one of the choices */
    case FT_ENUM: {
        if (t == LUA_TSTRING) {
            const char *s = lua_tostring(L, idx);
            for (int i = 0; f->choices[i]; i++)
                if (strcmp(s, f->choices[i]) == 0) {
                    *AT(def, f->offset, int) = i;
                    return;
                }
        }
        char list[256] = "";
        bool hook = f->type == FT_ENUM_OR_HOOK;
        for (int i = 0; f->choices[i]; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"%s\"",
                     i ? (f->choices[i + 1] || hook ? ", " : " or ") : "", f->choices[i]);
        if (hook)
            snprintf(list + strlen(list), sizeof list - strlen(list), " or a function");
        if (t == LUA_TSTRING)
            def_error(c, "field '%s' must be %s, not \"%s\"", path, list,
                      lua_tostring(L, idx));
        def_error(c, "field '%s' must be %s, not %s", path, list, type_name(L, idx));
        break;
    }
    case FT_STRLIST:
        convert_strlist(c, path, idx, AT(def, f->offset, struct strlist));
        break;
    case FT_REWRITES:
        convert_rewrites(c, path, idx, AT(def, f->offset, struct rewrite_list));
        break;
    case FT_STATUS_SET:
        convert_status_set(c, f, path, idx, AT(def, f->offset, struct status_set));
        break;
    case FT_SECTION:
        if (t != LUA_TTABLE)
            def_error(c, "field '%s' must be a table, not %s", path, type_name(L, idx));
        convert_fields(c, f->section, idx, path);
        break;
    }
}

/* Refuse unknown keys, then convert each known field that is present. */
static void convert_fields(struct ctx *c, const struct field *fields, int tbl,
                           const char *prefix)
{
    lua_State *L = c->L;
    char path[128];
    lua_pushnil(L);
    while (lua_next(L, tbl)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            def_error(c, "unexpected %s key%s%s: fields have names", type_name(L, -1),
                      prefix ? " in " : "", prefix ? prefix : "");
        }
        const char *key = lua_tostring(L, -1);
        const struct field *f = fields;
        while (f->name && strcmp(f->name, key) != 0)
            f++;
        if (!f->name) {
            snprintf(path, sizeof path, "%s%s%s", prefix ? prefix : "", prefix ? "." : "",
                     key);
            def_error(c, "unknown field '%s'", path);
        }
    }
    for (const struct field *f = fields; f->name; f++) {
        lua_getfield(L, tbl, f->name);
        int idx = lua_gettop(L);
        snprintf(path, sizeof path, "%s%s%s", prefix ? prefix : "", prefix ? "." : "",
                 f->name);
        if (lua_isnil(L, idx)) {
            if (f->required)
                def_error(c, "missing required field '%s'", path);
        } else if (f->alias_of) {
            lua_getfield(L, tbl, f->alias_of);
            if (!lua_isnil(L, -1))
                def_error(c, "field '%s' is another name for '%s': give one of them",
                          path, f->alias_of);
            lua_pop(L, 1);
            convert_field(c, f, idx, path);
        } else {
            convert_field(c, f, idx, path);
        }
        lua_settop(L, idx - 1);
    }
}

/* Build and add a definition from the table at `tbl`. */
static void define(lua_State *L, const struct kind_schema *schema, const char *name,
                   const char *file, int line, int tbl)
{
    struct dsl *d = dsl_get(L);
    struct ctx c = {.L = L, .schema = schema};
    if (name)
        snprintf(c.where, sizeof c.where, "%s:%d: %s \"%s\"", file, line, schema->keyword,
                 name);
    else
        snprintf(c.where, sizeof c.where, "%s:%d: %s", file, line, schema->keyword);
    if (!d || !d->cfg)
        def_error(&c, "definitions are only allowed in policy files");
    if (!lua_istable(L, tbl))
        def_error(&c, "expected a table of fields, got %s", type_name(L, tbl));
    c.def = config_def_new(schema->kind, name, file, line);
    if (!c.def)
        def_error(&c, "out of memory");
    convert_fields(&c, schema->fields, tbl, NULL);
    char err[512];
    if (config_def_check(c.def, err, sizeof err) < 0)
        def_error(&c, "%s", err);
    if (config_add(d->cfg, c.def, err, sizeof err) < 0)
        def_error(&c, "%s", err);
}

/* kind "name" { ... }: the second call, with the table. */
static int l_define_body(lua_State *L)
{
    const struct kind_schema *schema = lua_touserdata(L, lua_upvalueindex(1));
    const char *name = lua_tostring(L, lua_upvalueindex(2));
    const char *file = lua_tostring(L, lua_upvalueindex(3));
    int line = (int)lua_tointeger(L, lua_upvalueindex(4));
    define(L, schema, name, file, line, 1);
    return 0;
}

/* kind "name": the first call, with the name. For the switch, the table. */
static int l_define(lua_State *L)
{
    const struct kind_schema *schema = lua_touserdata(L, lua_upvalueindex(1));
    char file[1024];
    int line;
    caller_position(L, file, sizeof file, &line);
    if (!schema->named) {
        define(L, schema, NULL, file, line, 1);
        return 0;
    }
    if (lua_type(L, 1) != LUA_TSTRING || lua_objlen(L, 1) == 0)
        return luaL_error(L, "%s:%d: %s needs a name: %s \"name\" { ... }", file, line,
                          schema->keyword, schema->keyword);
    if (lua_gettop(L) >= 2) { /* kind("name", { ... }) also works */
        define(L, schema, lua_tostring(L, 1), file, line, 2);
        return 0;
    }
    lua_pushlightuserdata(L, (void *)schema);
    lua_pushvalue(L, 1);
    lua_pushstring(L, file);
    lua_pushinteger(L, line);
    lua_pushcclosure(L, l_define_body, 4);
    return 1;
}

void dsl_open(lua_State *L, struct config *cfg)
{
    struct dsl *d = lua_newuserdata(L, sizeof *d);
    d->cfg = cfg;
    d->file[0] = '\0';
    lua_pushlightuserdata(L, &dsl_key);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    for (int k = 0; k < KIND_COUNT; k++) {
        const struct kind_schema *schema = config_schema((enum config_kind)k);
        lua_pushlightuserdata(L, (void *)schema);
        lua_pushcclosure(L, l_define, 1);
        lua_setglobal(L, schema->keyword);
    }
}
