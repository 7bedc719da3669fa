/* Policy loading and validation: every kind of mistake is refused with the
 * file and line of the definition, and a valid policy becomes the expected
 * C structs. */
#include "check.h"

#include "config.h"
#include "dsl.h"
#include "module.h"
#include "runtime.h"

#include <lauxlib.h>
#include <lualib.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

static struct event_base *base;
static char dir[512];
static int dir_seq;

/* A fresh policy directory with the given files (name, text, name, text,
 * ..., NULL). */
static const char *policy_dir(const char *first, ...)
{
    const char *tmp = getenv("MOON_TEST_TMP");
    if (!tmp)
        tmp = "/tmp";
    mkdir(tmp, 0700);
    /* Relative paths: Lua shortens long chunk names in messages ("..."),
     * and operators pass short ones (--policies policies). */
    if (chdir(tmp) != 0)
        perror(tmp);
    snprintf(dir, sizeof dir, "policy-%d-%d", (int)getpid(), ++dir_seq);
    mkdir(dir, 0700);
    va_list ap;
    va_start(ap, first);
    for (const char *name = first; name; name = va_arg(ap, const char *)) {
        const char *text = va_arg(ap, const char *);
        char path[700];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "w");
        fputs(text, f);
        fclose(f);
    }
    va_end(ap);
    return dir;
}

static struct luart *load(const char *d, char *err, size_t errlen)
{
    static struct luahost host;
    host = (struct luahost){.base = base, .budget = 1.0};
    err[0] = '\0';
    return luart_load(&host, d, err, errlen);
}

/* Load and expect failure with `needle` in the message, which must start
 * with "<dir>/<file>:<line>:". */
static void expect_error(const char *d, const char *file, int line, const char *needle)
{
    char err[1024];
    struct luart *rt = load(d, err, sizeof err);
    CHECK(rt == NULL);
    if (rt)
        luart_retire(rt);
    char where[700];
    snprintf(where, sizeof where, "%s/%s:%d:", d, file, line);
    CHECK(strncmp(err, where, strlen(where)) == 0);
    if (strncmp(err, where, strlen(where)) != 0)
        fprintf(stderr, "  expected prefix %s\n  got %s\n", where, err);
    CHECK_STR_CONTAINS(err, needle);
}

static const char reg_ok[] = "registration \"a\" {\n"
                             "  server = \"127.0.0.1\", username = \"u\", password = \"p\",\n"
                             "}\n";

static void unknown_field(void)
{
    expect_error(policy_dir("10.lua",
                            "-- carriers\n\n"
                            "registration \"a\" {\n"
                            "  sever = \"127.0.0.1\", username = \"u\", password = \"p\",\n"
                            "}\n",
                            NULL),
                 "10.lua", 3, "unknown field 'sever'");
    expect_error(policy_dir("00.lua", "switch { sip = { invite_timeot = 5 } }\n", NULL),
                 "00.lua", 1, "unknown field 'sip.invite_timeot'");
}

static void missing_required(void)
{
    expect_error(policy_dir("10.lua", "\nregistration \"a\" { username = \"u\", password = \"p\" }\n",
                            NULL),
                 "10.lua", 2, "missing required field 'server'");
    expect_error(policy_dir("10.lua", "account \"1001\" { password = \"x\" }\n", NULL),
                 "10.lua", 1, "missing required field 'mapping_gateway'");
    expect_error(policy_dir("10.lua", "routing_gateway \"g\" { prefixes = { \"1\" } }\n", NULL),
                 "10.lua", 1, "missing required field 'address'");
}

static void wrong_type(void)
{
    expect_error(policy_dir("10.lua",
                            "registration \"a\" { server = \"s\", username = \"u\",\n"
                            "  password = \"p\", port = \"5060\" }\n",
                            NULL),
                 "10.lua", 1, "field 'port' must be a number");
    expect_error(policy_dir("10.lua",
                            "registration \"a\" { server = \"s\", username = 1001, password = \"p\" }\n",
                            NULL),
                 "10.lua", 1, "field 'username' must be a string, not number");
    expect_error(policy_dir("10.lua", "switch { sip = { user_agent_send_unregister = 1 } }\n",
                            NULL),
                 "10.lua", 1, "must be true or false");
    expect_error(policy_dir("10.lua", "registration \"a\" \"oops\"\n", NULL), "10.lua", 1,
                 "expected a table of fields");
}

static void out_of_range(void)
{
    expect_error(policy_dir("10.lua",
                            "registration \"a\" { server = \"s\", username = \"u\",\n"
                            "  password = \"p\", expires = 5 }\n",
                            NULL),
                 "10.lua", 1, "field 'expires' must be \"auto\" or a whole number from 20 to 7200");
    expect_error(policy_dir("10.lua",
                            "registration \"a\" { server = \"s\", username = \"u\",\n"
                            "  password = \"p\", retry_delay = 10 }\n",
                            NULL),
                 "10.lua", 1, "from 30 to 600");
    expect_error(policy_dir("10.lua", "switch { sip = { user_agent_retry_delay = 1000 } }\n",
                            NULL),
                 "10.lua", 1, "field 'sip.user_agent_retry_delay'");
    expect_error(policy_dir("10.lua", "switch { sip = { user_agent_expire = 7201 } }\n", NULL),
                 "10.lua", 1, "from 20 to 7200");
    expect_error(policy_dir("10.lua",
                            "registration \"a\" { server = \"s\", username = \"u\",\n"
                            "  password = \"p\", port = 70000 }\n",
                            NULL),
                 "10.lua", 1, "from 1 to 65535");
    expect_error(policy_dir("10.lua", "switch { listen = { \"udp:127.0.0.1\" } }\n", NULL),
                 "10.lua", 1, "listen: 'udp:127.0.0.1'");
}

static void bad_enum(void)
{
    expect_error(policy_dir("10.lua",
                            "registration \"a\" { server = \"s\", username = \"u\",\n"
                            "  password = \"p\", mode = \"weird\" }\n",
                            NULL),
                 "10.lua", 1, "field 'mode' must be \"static\" or \"dynamic\", not \"weird\"");
    expect_error(policy_dir("10.lua",
                            "mapping_gateway \"m\" { addresses = { \"1.2.3.4\" },\n"
                            "  caller_from = \"contact\" }\n",
                            NULL),
                 "10.lua", 1,
                 "\"from\", \"rpid\", \"display\", \"pai\" or a function, not \"contact\"");
}

/* NAT keepalive settings (issue 4): defaults, values, ranges, choices. */
static void keepalive_settings(void)
{
    char err[1024];
    struct luart *rt = load(policy_dir("00.lua", "switch { }\n", NULL), err, sizeof err);
    CHECK(rt != NULL);
    if (rt) {
        const struct switch_def *sw = config_switch(luart_config(rt));
        CHECK(sw->sip.endpoint_keepalive == ENDPOINT_KEEPALIVE_OPTIONS);
        CHECK(sw->sip.endpoint_keepalive_interval == 30);
        CHECK(sw->sip.endpoint_keepalive_misses == 3);
        luart_retire(rt);
    }
    rt = load(policy_dir("00.lua",
                         "switch { sip = { endpoint_keepalive = \"crlf\",\n"
                         "  endpoint_keepalive_interval = 5, endpoint_keepalive_misses = 20 } }\n",
                         NULL),
              err, sizeof err);
    CHECK(rt != NULL);
    if (rt) {
        const struct switch_def *sw = config_switch(luart_config(rt));
        CHECK(sw->sip.endpoint_keepalive == ENDPOINT_KEEPALIVE_CRLF);
        CHECK(sw->sip.endpoint_keepalive_interval == 5);
        CHECK(sw->sip.endpoint_keepalive_misses == 20);
        luart_retire(rt);
    }
    expect_error(policy_dir("00.lua", "switch { sip = { endpoint_keepalive = \"ping\" } }\n",
                            NULL),
                 "00.lua", 1, "must be \"options\", \"crlf\" or \"off\", not \"ping\"");
    expect_error(policy_dir("00.lua", "switch { sip = { endpoint_keepalive_interval = 4 } }\n",
                            NULL),
                 "00.lua", 1,
                 "'sip.endpoint_keepalive_interval' must be a whole number from 5 to 3600");
    expect_error(policy_dir("00.lua", "switch { sip = { endpoint_keepalive_misses = 0 } }\n",
                            NULL),
                 "00.lua", 1, "from 1 to 20");
}

static void duplicate_name(void)
{
    const char *d = policy_dir("10.lua", reg_ok, "20.lua", "\n\n\n" "registration \"a\" {\n"
                               "  server = \"s2\", username = \"u\", password = \"p\" }\n",
                               NULL);
    char first[600];
    snprintf(first, sizeof first, "first defined at %s/10.lua:1", d);
    expect_error(d, "20.lua", 4, "duplicate registration \"a\"");
    expect_error(d, "20.lua", 4, first);
    expect_error(policy_dir("10.lua", "switch {}\n\nswitch {}\n", NULL), "10.lua", 3,
                 "switch is already defined");
}

static void cross_references(void)
{
    expect_error(policy_dir("10.lua",
                            "routing_gateway \"g\" { type = \"registration\",\n"
                            "  address = \"1.2.3.4:5060\", registration = \"nope\" }\n",
                            NULL),
                 "10.lua", 1, "no registration \"nope\"");
    expect_error(policy_dir("10.lua",
                            "mapping_gateway \"m\" { addresses = { \"1.2.3.4\" } }\n"
                            "account \"1001\" { password = \"x\", mapping_gateway = \"m\" }\n",
                            NULL),
                 "10.lua", 2, "is not of type \"register\"");
    expect_error(policy_dir("10.lua",
                            "routing_gateway \"g\" { type = \"registration\",\n"
                            "  address = \"1.2.3.4:5060\" }\n",
                            NULL),
                 "10.lua", 1, "needs field 'registration'");
}

/* Dynamic routing gateways name an account and no address; the number
 * fields take a function as well as their choices. */
static void inbound_fields(void)
{
    static const char phones[] =
        "mapping_gateway \"p\" { type = \"register\" }\n"
        "account \"pbx\" { password = \"x\", mapping_gateway = \"p\" }\n";
    expect_error(policy_dir("10.lua", phones, "20.lua",
                            "routing_gateway \"g\" { type = \"dynamic\" }\n", NULL),
                 "20.lua", 1, "type \"dynamic\" needs field 'account'");
    expect_error(
        policy_dir("10.lua", phones, "20.lua",
                   "routing_gateway \"g\" { type = \"dynamic\", account = \"pbx\",\n"
                   "  address = \"1.2.3.4:5060\" }\n",
                   NULL),
        "20.lua", 1, "takes no 'address'");
    expect_error(
        policy_dir("10.lua", phones, "20.lua",
                   "routing_gateway \"g\" { type = \"dynamic\", account = \"nope\" }\n",
                   NULL),
        "20.lua", 1, "no account \"nope\"");
    expect_error(
        policy_dir(
            "10.lua",
            "routing_gateway \"g\" { address = \"1.2.3.4:5060\", account = \"a\" }\n",
            NULL),
        "10.lua", 1, "field 'account' needs type \"dynamic\"");
    expect_error(policy_dir("10.lua",
                            "routing_gateway \"g\" { address = \"1.2.3.4:5060\",\n"
                            "  peer_number_information = 5 }\n",
                            NULL),
                 "10.lua", 1, "\"pai\" or a function, not number");
    char err[1024];
    struct luart *rt =
        load(policy_dir(
                 "10.lua", phones, "20.lua",
                 "routing_gateway \"g\" { type = \"dynamic\", account = \"pbx\",\n"
                 "  peer_number_information = function(req) return req.to.user end }\n"
                 "routing_gateway \"s\" { address = \"1.2.3.4:5060\", username = \"u\",\n"
                 "  password = \"p\", peer_number_information = \"rpid\" }\n"
                 "mapping_gateway \"m\" { addresses = { \"1.2.3.4\" },\n"
                 "  caller_from = function(req) return \"1\" end, callee_from = "
                 "\"request_line\" }\n",
                 NULL),
             err, sizeof err);
    CHECK(rt != NULL);
    if (!rt) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    const struct config *cfg = luart_config(rt);
    const struct routing_gateway_def *g =
        (const void *)config_find(cfg, KIND_ROUTING_GATEWAY, "g");
    const struct routing_gateway_def *st =
        (const void *)config_find(cfg, KIND_ROUTING_GATEWAY, "s");
    const struct mapping_gateway_def *m =
        (const void *)config_find(cfg, KIND_MAPPING_GATEWAY, "m");
    CHECK(g && g->type == RGW_DYNAMIC && strcmp(g->account, "pbx") == 0 && !g->address);
    CHECK(g && g->peer_number_hook.ref != 0 && g->peer_number_hook.signature);
    CHECK(st && st->peer_number_information == CALLER_FROM_RPID &&
          st->peer_number_hook.ref == 0);
    CHECK(st && strcmp(st->username, "u") == 0 && strcmp(st->password, "p") == 0);
    CHECK(m && m->caller_hook.ref != 0 && m->callee_hook.ref == 0);
    CHECK(m && m->callee_from == CALLEE_FROM_REQUEST_LINE);
    CHECK(config_switch(cfg)->sip.route_timeout == 5);
    luart_retire(rt);
}

static void lua_errors(void)
{
    expect_error(policy_dir("10.lua", "switch {\n  listen = { \"udp:1.2.3.4:5060\" \n", NULL),
                 "10.lua", 3, "expected");
    expect_error(policy_dir("10.lua", "local x = nil\n\nx.y = 1\n", NULL), "10.lua", 3,
                 "attempt to index");
    expect_error(policy_dir("10.lua", "\nwhile true do end\n", NULL), "10.lua", 2,
                 "time budget");
    expect_error(policy_dir("10.lua",
                            "registration \"a\" { server = \"s\", username = \"u\",\n"
                            "  password = \"p\" }\nsleep(1)\n",
                            NULL),
                 "10.lua", 3, "cannot wait here");
    expect_error(policy_dir("10.lua",
                            "routing_gateway \"g\" { address = \"1.2.3.4:5060\",\n"
                            "  callee_rewrite = { { \"[0-\", \"\" } } }\n",
                            NULL),
                 "10.lua", 1, "bad pattern");
}

/* The contract's example policy loads, and its values reach the structs. */
static void contract_example(void)
{
    char err[1024];
    const char *d = policy_dir(
        "00-switch.lua",
        "switch {\n"
        "  listen = { \"udp:127.0.0.1:5060\" },\n"
        "  sip = { user_agent_expire = \"auto\", user_agent_retry_delay = 60,\n"
        "    user_agent_send_unregister = true, user_agent_privacy = \"ignore\",\n"
        "    routing_gateway_invite_use_contact = false, endpoint_expire = 3600,\n"
        "    endpoint_nat_expire = 300, endpoint_register_retry = 6,\n"
        "    endpoint_register_suspend = 180, endpoint_register_replace = true,\n"
        "    invite_timeout = 10, call_progress_timeout = 120 },\n"
        "}\n",
        "10-carriers.lua",
        "registration \"carrier-a\" {\n"
        "  server = \"203.0.113.10\", port = 5060,\n"
        "  username = \"acct1\", password = \"secret\",\n"
        "  auth_username = nil, hostname = \"carrier-a.example\",\n"
        "  proxy = nil, local_ip = nil, user_agent = nil,\n"
        "  expires = \"auto\", retry_delay = 60, mode = \"static\",\n"
        "  privacy = \"ignore\", enabled = true,\n"
        "}\n"
        "registration \"carrier-b\" { server = \"203.0.113.11\", username = \"b\",\n"
        "  password = \"x\", expires = 300, privacy = \"id\", mode = \"dynamic\",\n"
        "  retry_delay = function(reg) return 30 end }\n"
        "routing_gateway \"carrier-a\" {\n"
        "  type = \"registration\", address = \"203.0.113.10:5060\",\n"
        "  registration = \"carrier-a\", prefixes = { \"880\", \"1\" }, priority = 1,\n"
        "  line_limit = 100, invite_use_contact = nil,\n"
        "  callee_rewrite = { { \"^00\", \"\" } }, reply_address = \"socket\",\n"
        "  request_address = \"socket\", options_check = 30,\n"
        "}\n",
        "20-customers.lua",
        "mapping_gateway \"customer-x\" { type = \"static\", addresses = { \"198.51.100.7\" },\n"
        "  callee_from = \"to\", caller_from = \"from\", line_limit = 50 }\n"
        "mapping_gateway \"phones\" { type = \"register\" }\n"
        "account \"1001\" { password = \"pw1001\", mapping_gateway = \"phones\" }\n",
        NULL);
    struct luart *rt = load(d, err, sizeof err);
    CHECK(rt != NULL);
    if (!rt) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    const struct config *cfg = luart_config(rt);
    CHECK(config_count(cfg, KIND_REGISTRATION) == 2);
    CHECK(config_count(cfg, KIND_ROUTING_GATEWAY) == 1);
    CHECK(config_count(cfg, KIND_MAPPING_GATEWAY) == 2);
    CHECK(config_count(cfg, KIND_ACCOUNT) == 1);
    const struct switch_def *sw = config_switch(cfg);
    CHECK(sw->listen.n == 1 && strcmp(sw->listen.v[0], "udp:127.0.0.1:5060") == 0);
    CHECK(sw->sip.user_agent_expire == CONFIG_AUTO);
    CHECK(sw->sip.invite_timeout == 10 && sw->sip.call_progress_timeout == 120);
    const struct registration_def *a =
        (const void *)config_find(cfg, KIND_REGISTRATION, "carrier-a");
    CHECK(a && strcmp(a->server, "203.0.113.10") == 0 && a->port == 5060);
    CHECK(a && strcmp(a->hostname, "carrier-a.example") == 0 && a->auth_username == NULL);
    CHECK(a && a->expires == CONFIG_AUTO && a->retry_delay == 60 && a->enabled);
    CHECK(a && a->head.line == 1);
    const struct registration_def *b =
        (const void *)config_find(cfg, KIND_REGISTRATION, "carrier-b");
    CHECK(b && b->expires == 300 && b->privacy == PRIVACY_ID && b->mode == REG_MODE_DYNAMIC);
    CHECK(b && b->retry_delay_hook.ref != 0 && b->retry_delay_hook.signature != NULL);
    CHECK(b && b->port == 5060); /* default */
    const struct routing_gateway_def *g =
        (const void *)config_find(cfg, KIND_ROUTING_GATEWAY, "carrier-a");
    CHECK(g && g->type == RGW_REGISTRATION && g->prefixes.n == 2 && g->line_limit == 100);
    CHECK(g && g->callee_rewrite.n == 1 && strcmp(g->callee_rewrite.v[0].pattern, "^00") == 0);
    CHECK(g && g->invite_use_contact == TRI_INHERIT && g->options_check == 30);
    const struct mapping_gateway_def *m =
        (const void *)config_find(cfg, KIND_MAPPING_GATEWAY, "customer-x");
    CHECK(m && m->addresses.n == 1 && m->line_limit == 50 && m->caller_from == CALLER_FROM_FROM);
    luart_retire(rt);
}

/* Reload's comparison: added, changed, removed, unchanged; a function field
 * counts as changed only when its code changes. */
static void diff(void)
{
    char err[1024];
    struct luart *one = load(policy_dir("10.lua",
                                        "registration \"a\" { server = \"s\", username = \"u\","
                                        " password = \"p\" }\n"
                                        "registration \"b\" { server = \"s\", username = \"u\","
                                        " password = \"p\", retry_delay = function() return 30 end }\n"
                                        "registration \"c\" { server = \"s\", username = \"u\","
                                        " password = \"p\" }\n",
                                        NULL),
                             err, sizeof err);
    struct luart *two = load(policy_dir("10.lua",
                                        "-- moved down a line\n"
                                        "registration \"a\" { server = \"s\", username = \"u\","
                                        " password = \"p\" }\n"
                                        "registration \"b\" { server = \"s\", username = \"u\","
                                        " password = \"p\", retry_delay = function() return 30 end }\n"
                                        "registration \"c\" { server = \"s\", username = \"u\","
                                        " password = \"p2\" }\n"
                                        "registration \"d\" { server = \"s\", username = \"u\","
                                        " password = \"p\" }\n",
                                        NULL),
                             err, sizeof err);
    struct luart *three = load(policy_dir("10.lua",
                                          "registration \"b\" { server = \"s\", username = \"u\","
                                          " password = \"p\", retry_delay = function() return 60 end }\n",
                                          NULL),
                               err, sizeof err);
    CHECK(one && two && three);
    if (!one || !two || !three)
        return;
    struct config_diff d = config_diff(luart_config(one), luart_config(two), NULL, NULL);
    /* the default switch is unchanged too */
    CHECK(d.added == 1 && d.changed == 1 && d.removed == 0 && d.unchanged == 3);
    d = config_diff(luart_config(two), luart_config(three), NULL, NULL);
    CHECK(d.added == 0 && d.changed == 1 && d.removed == 3 && d.unchanged == 1);
    char summary[128];
    config_diff_summary(&d, summary, sizeof summary);
    CHECK(strcmp(summary, "0 added, 1 changed, 3 removed, 1 unchanged") == 0);
    luart_retire(one);
    luart_retire(two);
    luart_retire(three);
}

/* A REPL chunk cannot add definitions to a live policy set. */
static void sealed_after_load(void)
{
    char err[1024];
    struct luart *rt = load(policy_dir("10.lua", reg_ok, NULL), err, sizeof err);
    CHECK(rt != NULL);
    if (!rt)
        return;
    lua_State *L = luart_state(rt);
    int rc = luaL_dostring(L, "registration \"z\" { server = \"s\", username = \"u\","
                              " password = \"p\" }");
    CHECK(rc != 0);
    CHECK_STR_CONTAINS(lua_tostring(L, -1), "only allowed in policy files");
    lua_pop(L, 1);
    CHECK(config_count(luart_config(rt), KIND_REGISTRATION) == 1);
    luart_retire(rt);
}

/* A fresh runtime has the globals of every API module of the table in
 * module.c, and the DSL's. */
static void every_module_opened(void)
{
    char err[1024];
    struct luart *rt = load(policy_dir("10.lua", reg_ok, NULL), err, sizeof err);
    CHECK(rt != NULL);
    if (!rt)
        return;
    lua_State *L = luart_state(rt);
    static const char *const functions[] = {
        "sleep",        "reload",  "stats",           "print",           "top", "switch",
        "registration", "account", "routing_gateway", "mapping_gateway", NULL};
    static const char *const tables[] = {
        "timer",    "kv",          "registrations", "gateways", "sip",  "endpoints",
        "accounts", "suspensions", "calls",         "cdrs",     "help", NULL};
    for (int i = 0; functions[i]; i++) {
        lua_getglobal(L, functions[i]);
        CHECK(lua_isfunction(L, -1));
        if (!lua_isfunction(L, -1))
            fprintf(stderr, "  global %s is not a function\n", functions[i]);
        lua_pop(L, 1);
    }
    for (int i = 0; tables[i]; i++) {
        lua_getglobal(L, tables[i]);
        CHECK(lua_istable(L, -1));
        if (!lua_istable(L, -1))
            fprintf(stderr, "  global %s is not a table\n", tables[i]);
        lua_pop(L, 1);
    }
    luart_retire(rt);
}

static const struct api_help *help_entry(const char *global)
{
    size_t n;
    const struct api_module *const *mods = api_modules(&n);
    for (size_t m = 0; m < n; m++)
        for (const struct api_help *h = mods[m]->help; h && h->global; h++)
            if (strcmp(h->global, global) == 0)
                return h;
    return NULL;
}

/* Every API module says what it opens (module.h): each global a fresh
 * runtime has beyond Lua's libraries and the DSL has a help entry of one
 * line that fits help's listing, and each entry names a global that
 * exists. */
static void every_global_has_help(void)
{
    char err[1024];
    struct luart *rt = load(policy_dir("10.lua", reg_ok, NULL), err, sizeof err);
    CHECK(rt != NULL);
    if (!rt)
        return;
    lua_State *L = luart_state(rt);
    size_t n;
    const struct api_module *const *mods = api_modules(&n);
    for (size_t m = 0; m < n; m++) {
        CHECK(mods[m]->help != NULL); /* empty for a module that opens no global */
        for (const struct api_help *h = mods[m]->help; h && h->global; h++) {
            lua_getglobal(L, h->global);
            CHECK(!lua_isnil(L, -1));
            if (lua_isnil(L, -1))
                fprintf(stderr, "  help names %s, which is not a global\n", h->global);
            lua_pop(L, 1);
            CHECK(h->line && strlen(h->line) <= 63 && !strchr(h->line, '\n'));
            if (h->line && strlen(h->line) > 63)
                fprintf(stderr, "  help line of %s is longer than 63: %s\n", h->global,
                        h->line);
            CHECK(!h->detail || h->detail[strlen(h->detail) - 1] == '\n');
        }
    }
    /* What a state has without the API modules. */
    lua_State *bare = luaL_newstate();
    struct config *cfg = config_new();
    luaL_openlibs(bare);
    dsl_open(bare, cfg);
    lua_pushnil(L);
    while (lua_next(L, LUA_GLOBALSINDEX)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            continue;
        const char *name = lua_tostring(L, -1);
        lua_getglobal(bare, name);
        int standard = !lua_isnil(bare, -1);
        lua_pop(bare, 1);
        if (!standard && !help_entry(name)) {
            CHECK(help_entry(name) != NULL);
            fprintf(stderr, "  global %s has no help entry\n", name);
        }
    }
    lua_close(bare);
    config_free(cfg);
    luart_retire(rt);
}

static void setup(void)
{
    base = event_base_new();
    event_base_priority_init(base, 3);
}

TEST_MAIN(CASE(setup), CASE(unknown_field), CASE(missing_required), CASE(wrong_type),
          CASE(out_of_range), CASE(bad_enum), CASE(keepalive_settings),
          CASE(duplicate_name), CASE(cross_references), CASE(lua_errors),
          CASE(contract_example), CASE(diff), CASE(sealed_after_load),
          CASE(every_module_opened), CASE(every_global_has_help), CASE(inbound_fields))
