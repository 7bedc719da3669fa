/* kv.get(key), kv.put(key, value), kv.del(key): a durable key-value store
 * for policies, in the store's "kv" database.
 *
 * Values are strings, numbers or booleans. A put is staged in this loop
 * turn's write transaction and committed with it (group commit); anything a
 * policy or the REPL acknowledges is committed before the acknowledgement
 * leaves. Misuse raises an error; a storage failure returns nil, reason. */
#include "module.h"
#include "runtime.h"
#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Record version 1: one type byte, then the value. */
#define KV_VERSION 1
enum { KV_STRING = 's', KV_NUMBER = 'n', KV_BOOLEAN = 'b' };

static struct store *kv_store(lua_State *L)
{
    struct store *s = luart_host(RT_UPVALUE(L))->store;
    if (!s)
        luaL_error(L, "kv: no store is open");
    return s;
}

static const char *check_key(lua_State *L, size_t *len)
{
    const char *key = luaL_checklstring(L, 1, len);
    if (*len == 0 || *len > STORE_MAX_KEY - 1)
        luaL_argerror(L, 1, "key must be 1 to 510 bytes");
    return key;
}

static int push_failure(lua_State *L, int rc)
{
    lua_pushnil(L);
    lua_pushstring(L, rc == -ENOSPC ? "store is full (LMDB map full)" : strerror(-rc));
    return 2;
}

static int l_get(lua_State *L)
{
    size_t klen;
    const char *key = check_key(L, &klen);
    uint8_t version;
    void *val;
    size_t vlen;
    int rc = store_get(kv_store(L), STORE_KV, key, klen, &version, &val, &vlen);
    if (rc == -ENOENT) {
        lua_pushnil(L);
        return 1;
    }
    if (rc < 0)
        return push_failure(L, rc);
    const char *p = val;
    if (version != KV_VERSION || vlen < 1) {
        free(val);
        lua_pushnil(L);
        lua_pushstring(L, "kv: record of an unknown version");
        return 2;
    }
    switch (p[0]) {
    case KV_STRING:
        lua_pushlstring(L, p + 1, vlen - 1);
        break;
    case KV_NUMBER: {
        double d;
        memcpy(&d, p + 1, sizeof d);
        lua_pushnumber(L, d);
        break;
    }
    case KV_BOOLEAN:
        lua_pushboolean(L, p[1] != 0);
        break;
    default:
        lua_pushnil(L);
    }
    free(val);
    return 1;
}

static int l_put(lua_State *L)
{
    size_t klen;
    const char *key = check_key(L, &klen);
    char small[1 + sizeof(double)];
    char *buf = small;
    size_t vlen;
    switch (lua_type(L, 2)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, 2, &n);
        buf = lua_newuserdata(L, n + 1); /* freed by the GC, even on error */
        buf[0] = KV_STRING;
        memcpy(buf + 1, s, n);
        vlen = n + 1;
        break;
    }
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, 2);
        small[0] = KV_NUMBER;
        memcpy(small + 1, &d, sizeof d);
        vlen = 1 + sizeof d;
        break;
    }
    case LUA_TBOOLEAN:
        small[0] = KV_BOOLEAN;
        small[1] = (char)lua_toboolean(L, 2);
        vlen = 2;
        break;
    default:
        return luaL_argerror(L, 2, "value must be a string, number or boolean");
    }
    int rc = store_put(kv_store(L), STORE_KV, key, klen, KV_VERSION, buf, vlen);
    if (rc < 0)
        return push_failure(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_del(lua_State *L)
{
    size_t klen;
    const char *key = check_key(L, &klen);
    int rc = store_del(kv_store(L), STORE_KV, key, klen);
    if (rc < 0 && rc != -ENOENT)
        return push_failure(L, rc);
    lua_pushboolean(L, rc == 0);
    return 1;
}

struct keys_ctx {
    lua_State *L;
    const char *prefix;
    size_t plen;
    int n;
};

static int collect_key(const void *key, size_t klen, uint8_t version, const void *val,
                       size_t vlen, void *arg)
{
    struct keys_ctx *c = arg;
    (void)version;
    (void)val;
    (void)vlen;
    if (klen >= c->plen && memcmp(key, c->prefix, c->plen) == 0) {
        lua_pushlstring(c->L, key, klen);
        lua_rawseti(c->L, -2, ++c->n);
    }
    return 0;
}

/* kv.keys([prefix]): the keys in byte order. O(records). */
static int l_keys(lua_State *L)
{
    struct keys_ctx c = {.L = L};
    c.prefix = luaL_optlstring(L, 1, "", &c.plen);
    struct store *s = kv_store(L);
    lua_newtable(L);
    int rc = store_foreach(s, STORE_KV, collect_key, &c);
    if (rc < 0)
        return push_failure(L, rc);
    return 1;
}

static void open_kv(lua_State *L, struct luart *rt)
{
    lua_newtable(L);
    api_setfield(L, rt, "get", l_get);
    api_setfield(L, rt, "put", l_put);
    api_setfield(L, rt, "del", l_del);
    api_setfield(L, rt, "keys", l_keys);
    lua_setglobal(L, "kv");
}

static const struct api_help help[] = {
    {"kv", "kv.get/put/del/keys: a durable key-value store for policies",
     "  kv.get(key)                  the value (string, number or boolean), or nil\n"
     "  kv.put(key, value)           store it; committed before the REPL answers\n"
     "  kv.del(key)                  remove it\n"
     "  kv.keys([prefix])            the keys, in byte order\n",
     NULL},
    {NULL, NULL, NULL, NULL},
};

const struct api_module api_kv = {
    .name = "kv.get, kv.put, kv.del, kv.keys", .help = help, .open = open_kv};
