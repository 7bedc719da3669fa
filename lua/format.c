/* How values print in the REPL and in `moonctl -e`. See format.h. */
#include "format.h"

#include <lauxlib.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static void add_number(struct strbuf *b, double d)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.14g", d);
    strbuf_add(b, tmp, strlen(tmp));
}

static void add_quoted(struct strbuf *b, const char *s, size_t n)
{
    strbuf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            strbuf_addf(b, "\\%c", c);
        else if (c == '\n')
            strbuf_add(b, "\\n", 2);
        else if (c == '\r')
            strbuf_add(b, "\\r", 2);
        else if (c == '\t')
            strbuf_add(b, "\\t", 2);
        else if (c < 32 || c == 127)
            strbuf_addf(b, "\\%d", c);
        else
            strbuf_add(b, (const char *)&s[i], 1);
    }
    strbuf_add(b, "\"", 1);
}

static int is_identifier(const char *s, size_t n)
{
    static const char *const reserved[] = {
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto",
        "if", "in", "local", "nil", "not", "or", "repeat", "return", "then", "true",
        "until", "while", NULL};
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    for (int i = 0; reserved[i]; i++)
        if (strlen(reserved[i]) == n && memcmp(reserved[i], s, n) == 0)
            return 0;
    return 1;
}

/* Sort keys so output is stable: numbers first, then strings, then others. */
static int key_less(lua_State *L, int a, int b)
{
    int ta = lua_type(L, a), tb = lua_type(L, b);
    if (ta != tb)
        return ta == LUA_TNUMBER || (ta == LUA_TSTRING && tb != LUA_TNUMBER);
    if (ta == LUA_TNUMBER)
        return lua_tonumber(L, a) < lua_tonumber(L, b);
    if (ta == LUA_TSTRING)
        return strcmp(lua_tostring(L, a), lua_tostring(L, b)) < 0;
    return lua_topointer(L, a) < lua_topointer(L, b);
}

static void format_at(lua_State *L, int idx, struct strbuf *b, int depth, int seen,
                      int top);

static void add_indent(struct strbuf *b, int depth)
{
    for (int i = 0; i < depth; i++)
        strbuf_add(b, "  ", 2);
}

/* A table as a Lua literal. Arrays print their items in order, the rest by
 * sorted key. Short tables stay on one line; longer ones get one field per
 * line. `seen` (a table on the stack) guards against cycles. */
static void format_table(lua_State *L, int idx, struct strbuf *b, int depth, int seen)
{
    lua_pushvalue(L, idx);
    lua_rawget(L, seen);
    int cyclic = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (cyclic || depth > 16) {
        strbuf_add(b, "{...}", 5);
        return;
    }
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen);

    size_t n = lua_objlen(L, idx);
    /* Collect non-array keys and sort them (insertion sort: tables shown in
     * a REPL are small). */
    lua_newtable(L);
    int keys = lua_gettop(L);
    int nkeys = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        int k = lua_gettop(L);
        if (lua_type(L, k) == LUA_TNUMBER) {
            double d = lua_tonumber(L, k);
            if (d >= 1 && d <= (double)n && d == (double)(long long)d)
                continue;
        }
        int pos = ++nkeys;
        while (pos > 1) {
            lua_rawgeti(L, keys, pos - 1);
            int less = key_less(L, k, lua_gettop(L));
            if (!less) {
                lua_pop(L, 1);
                break;
            }
            lua_rawseti(L, keys, pos);
            pos--;
        }
        lua_pushvalue(L, k);
        lua_rawseti(L, keys, pos);
    }

    /* Render into a scratch buffer to decide between one line and many. */
    struct strbuf one = {0};
    int simple = 1;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        if (lua_istable(L, -1))
            simple = 0;
        lua_pop(L, 1);
    }
    for (int i = 1; i <= nkeys; i++) {
        lua_rawgeti(L, keys, i);
        lua_rawget(L, idx);
        if (lua_istable(L, -1))
            simple = 0;
        lua_pop(L, 1);
    }
    int multiline = !simple || n + (size_t)nkeys > 6;
    struct strbuf *out = multiline ? b : &one;
    strbuf_add(out, "{", 1);
    int first = 1;
    for (size_t i = 1; i <= n + (size_t)nkeys; i++) {
        strbuf_add(out, first ? "" : ",", first ? 0 : 1);
        first = 0;
        if (multiline) {
            strbuf_add(out, "\n", 1);
            add_indent(out, depth + 1);
        } else {
            strbuf_add(out, " ", 1);
        }
        if (i <= n) {
            lua_rawgeti(L, idx, (int)i);
        } else {
            lua_rawgeti(L, keys, (int)(i - n));
            int k = lua_gettop(L);
            size_t klen = 0;
            const char *kstr =
                lua_type(L, k) == LUA_TSTRING ? lua_tolstring(L, k, &klen) : NULL;
            if (kstr && is_identifier(kstr, klen)) {
                strbuf_add(out, kstr, klen);
            } else {
                strbuf_add(out, "[", 1);
                format_at(L, k, out, depth + 1, seen, 0);
                strbuf_add(out, "]", 1);
            }
            strbuf_add(out, " = ", 3);
            lua_rawget(L, idx);
        }
        format_at(L, lua_gettop(L), out, depth + 1, seen, 0);
        lua_pop(L, 1);
    }
    if (multiline) {
        if (!first) {
            strbuf_add(out, "\n", 1);
            add_indent(out, depth);
        }
        strbuf_add(out, "}", 1);
    } else {
        strbuf_add(out, first ? "}" : " }", first ? 1 : 2);
        strbuf_add(b, one.data, one.len);
        strbuf_free(&one);
    }
    lua_pop(L, 1); /* keys */
    lua_pushvalue(L, idx);
    lua_pushnil(L);
    lua_rawset(L, seen);
}

static void format_at(lua_State *L, int idx, struct strbuf *b, int depth, int seen,
                      int top)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        strbuf_add(b, "nil", 3);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            strbuf_add(b, "true", 4);
        else
            strbuf_add(b, "false", 5);
        return;
    case LUA_TNUMBER:
        add_number(b, lua_tonumber(L, idx));
        return;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (top)
            strbuf_add(b, s, n);
        else
            add_quoted(b, s, n);
        return;
    }
    default:
        break;
    }
    if (luaL_getmetafield(L, idx, "__tostring")) {
        lua_pushvalue(L, idx);
        if (lua_pcall(L, 1, 1, 0) == 0 && lua_isstring(L, -1)) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            strbuf_add(b, s, n);
        } else {
            strbuf_add(b, "<__tostring failed>", 19);
        }
        lua_pop(L, 1);
        return;
    }
    if (lua_istable(L, idx)) {
        format_table(L, idx, b, depth, seen);
        return;
    }
    strbuf_addf(b, "<%s: %p>", luaL_typename(L, idx), lua_topointer(L, idx));
}

void format_value(lua_State *L, int idx, struct strbuf *b)
{
    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    luaL_checkstack(L, 40, "formatting a value");
    lua_newtable(L);
    int seen = lua_gettop(L);
    format_at(L, idx, b, 0, seen, 1);
    lua_pop(L, 1);
}
