/* Policy definitions: schemas, defaults, cross-checks and diffs. */
#include "config.h"
#include "metrics_server.h"
#include "sip/tlsfiles.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Schemas ----------------------------------------------------------- */

static const char *const privacy_choices[] = {"ignore", "id", "none", NULL};
static const char *const reg_mode_choices[] = {"static", "dynamic", NULL};
static const char *const rgw_type_choices[] = {"static", "dynamic", "registration", NULL};
static const char *const mgw_type_choices[] = {"static", "register", NULL};
static const char *const reply_choices[] = {"socket", "via", "via_port", NULL};
static const char *const request_choices[] = {"socket", "contact", "contact_port", NULL};
static const char *const callee_choices[] = {"to", "request_line", NULL};
static const char *const caller_choices[] = {"from", "rpid", "display", "pai", NULL};
static const char *const endpoint_digest_choices[] = {"sha256,md5", "md5,sha256", "md5",
                                                      "sha256", NULL};
static const char *const endpoint_keepalive_choices[] = {"options", "crlf", "off", NULL};
static const char *const display_from_choices[] = {"ignore", "caller", "none", NULL};
static const char *const transport_choices[] = {"udp", "tcp", "tls", NULL};

/* What the B-leg fails over on unless the policy says otherwise. */
static const short failover_default[] = {408, 480, 500, 502, 503, 504, 0};

#define SIP(f) offsetof(struct switch_def, sip) + offsetof(struct sip_settings, f)

/* Offsets in sip_fields are from the start of struct switch_def, so one
 * definition pointer serves the switch and its nested section. */
static const struct field sip_fields[] = {
    {.name = "user_agent_expire", .type = FT_INT_OR_AUTO, .offset = SIP(user_agent_expire),
     .min = 20, .max = 7200, .def = CONFIG_AUTO, .vos_name = "SS_SIP_USER_AGENT_EXPIRE"},
    {.name = "user_agent_retry_delay", .type = FT_INT, .offset = SIP(user_agent_retry_delay),
     .min = 30, .max = 600, .def = 60, .vos_name = "SS_SIP_USER_AGENT_RETRY_DELAY"},
    {.name = "user_agent_send_unregister", .type = FT_BOOL,
     .offset = SIP(user_agent_send_unregister), .def = 1,
     .vos_name = "SS_SIP_USER_AGENT_SEND_UNREGISTER"},
    {.name = "user_agent_privacy", .type = FT_ENUM, .offset = SIP(user_agent_privacy),
     .choices = privacy_choices, .def = PRIVACY_IGNORE,
     .vos_name = "SS_SIP_USER_AGENT_PRIVACY"},
    {.name = "routing_gateway_invite_use_contact", .type = FT_BOOL,
     .offset = SIP(routing_gateway_invite_use_contact), .def = 0,
     .vos_name = "SS_SIP_ROUTING_GATEWAY_INVITE_USE_CONTACT"},
    {.name = "endpoint_expire", .type = FT_INT, .offset = SIP(endpoint_expire), .min = 300,
     .max = 3600, .def = 3600, .vos_name = "SS_ENDPOINT_EXPIRE"},
    {.name = "endpoint_nat_expire", .type = FT_INT, .offset = SIP(endpoint_nat_expire),
     .min = 20, .max = 3600, .def = 300, .vos_name = "SS_ENDPOINT_NAT_EXPIRE"},
    {.name = "endpoint_register_retry", .type = FT_INT,
     .offset = SIP(endpoint_register_retry), .min = 1, .max = 100, .def = 6,
     .vos_name = "SS_ENDPOINT_REGISTER_RETRY"},
    {.name = "endpoint_register_suspend", .type = FT_INT,
     .offset = SIP(endpoint_register_suspend), .min = 0, .max = 86400, .def = 180,
     .vos_name = "SS_ENDPOINT_REGISTER_SUSPEND"},
    {.name = "endpoint_register_replace", .type = FT_BOOL,
     .offset = SIP(endpoint_register_replace), .def = 1,
     .vos_name = "SS_ENDPOINT_REGISTER_REPLACE"},
    {.name = "endpoint_digest", .type = FT_ENUM, .offset = SIP(endpoint_digest),
     .choices = endpoint_digest_choices, .def = ENDPOINT_DIGEST_MD5,
     .vos_name = "(none: digest algorithms offered to endpoints)"},
    /* NAT keepalive of endpoint bindings: moonswitch's own settings */
    {.name = "endpoint_keepalive", .type = FT_ENUM, .offset = SIP(endpoint_keepalive),
     .choices = endpoint_keepalive_choices, .def = ENDPOINT_KEEPALIVE_OPTIONS,
     .vos_name = "(none: NAT keepalive, OPTIONS or CRLF)"},
    {.name = "endpoint_keepalive_interval", .type = FT_INT,
     .offset = SIP(endpoint_keepalive_interval), .min = 5, .max = 3600, .def = 30,
     .vos_name = "(none: NAT keepalive period, s)"},
    {.name = "endpoint_keepalive_misses", .type = FT_INT,
     .offset = SIP(endpoint_keepalive_misses), .min = 1, .max = 20, .def = 3,
     .vos_name = "(none: unanswered keepalives that remove a binding)"},
    {.name = "invite_timeout", .type = FT_INT, .offset = SIP(invite_timeout), .min = 1,
     .max = 300, .def = 10, .vos_name = "SS_SIP_TIMEOUT_INVITE"},
    {.name = "timeout_invite", .type = FT_INT, .offset = SIP(invite_timeout), .min = 1,
     .max = 300, .def = 10, .vos_name = "SS_SIP_TIMEOUT_INVITE",
     .alias_of = "invite_timeout"},
    {.name = "call_progress_timeout", .type = FT_INT, .offset = SIP(call_progress_timeout),
     .min = 1, .max = 3600, .def = 120, .vos_name = "SIP call progress timeout"},
    /* An end for answered calls with a leg that refreshes no session */
    {.name = "no_timer_reinvite_interval", .type = FT_INT,
     .offset = SIP(no_timer_reinvite_interval), .min = 0, .max = 86400, .def = 7200,
     .vos_name = "SS_SIP_NO_TIMER_REINVITE_INTERVAL"},
    {.name = "max_call_duration", .type = FT_INT, .offset = SIP(no_timer_reinvite_interval),
     .min = 0, .max = 86400, .def = 7200, .vos_name = "SS_SIP_NO_TIMER_REINVITE_INTERVAL",
     .alias_of = "no_timer_reinvite_interval"},
    {.name = "resend_interval", .type = FT_INT, .offset = SIP(resend_interval), .min = 100,
     .max = 4000, .def = 500, .vos_name = "SS_SIP_RESEND_INTERVAL (T1, ms)"},
    {.name = "failover_codes", .type = FT_STATUS_SET, .offset = SIP(failover_codes),
     .min = 300, .max = 699, .codes = failover_default,
     .vos_name = "(none: final statuses that try the next gateway)"},
    /* RFC 4028 session timers on both legs of a call */
    {.name = "session_ttl", .type = FT_INT_OR_FALSE, .offset = SIP(session_ttl), .min = 90,
     .max = 86400, .def = 600, .vos_name = "SS_SIP_SESSION_TTL"},
    {.name = "session_update_segment", .type = FT_INT, .offset = SIP(session_update_segment),
     .min = 2, .max = 10, .def = 2, .vos_name = "SS_SIP_SESSION_UPDATE_SEGMENT"},
    {.name = "session_timeout_early_hangup", .type = FT_INT,
     .offset = SIP(session_timeout_early_hangup), .min = 0, .max = 3600, .def = 0,
     .vos_name = "SS_SIP_SESSION_TIMEOUT_EARLY_HANGUP"},
    {.name = "session_min_se", .type = FT_INT, .offset = SIP(session_min_se), .min = 90,
     .max = 86400, .def = 90, .vos_name = "(none: Min-SE, RFC 4028)"},
    {.name = "no_timer_options_interval", .type = FT_INT_OR_FALSE,
     .offset = SIP(no_timer_options_interval), .min = 5, .max = 3600, .def = 0,
     .vos_name = "(none: in-dialog OPTIONS to legs without a session timer)"},
    {.name = "authentication_retry", .type = FT_INT, .offset = SIP(authentication_retry),
     .min = 0, .max = 10, .def = 1, .vos_name = "SS_SIP_AUTHENTICATION_RETRY"},
    {.name = "publish_expire", .type = FT_INT, .offset = SIP(publish_expire), .min = 30,
     .max = 7200, .def = 300, .vos_name = "SS_SIP_PUBLISH_EXPIRE"},
    {.name = "e164_display_from", .type = FT_ENUM, .offset = SIP(e164_display_from),
     .choices = display_from_choices, .def = DISPLAY_FROM_IGNORE,
     .vos_name = "SS_SIP_E164_DISPLAY_FROM"},
    {.name = "nat_keep_alive_period", .type = FT_INT,
     .offset = SIP(endpoint_keepalive_interval), .min = 5, .max = 3600, .def = 30,
     .vos_name = "SS_SIP_NAT_KEEP_ALIVE_PERIOD", .alias_of = "endpoint_keepalive_interval"},
    /* How long the policy may take to decide a call, waits included */
    {.name = "route_timeout", .type = FT_INT, .offset = SIP(route_timeout), .min = 1,
     .max = 60, .def = 5, .vos_name = "(none: seconds route() and on_failure() may take)"},
    {0},
};

#define SECURITY(f)                                                                   \
    offsetof(struct switch_def, security) + offsetof(struct security_settings, f)

/* Offsets from the start of struct switch_def, as for sip_fields. */
static const struct field security_fields[] = {
    {.name = "source_rate", .type = FT_INT, .offset = SECURITY(source_rate), .min = 0,
     .max = 1000000, .def = 100,
     .vos_name = "(none: requests/s per non-gateway source, 0: no limit)"},
    {.name = "source_ban", .type = FT_INT, .offset = SECURITY(source_ban), .min = 1,
     .max = 2592000, .def = 600,
     .vos_name = "(none: seconds a flooding source is dropped)"},
    {.name = "max_calls", .type = FT_INT, .offset = SECURITY(max_calls), .min = 0,
     .max = 1000000, .def = 0, .vos_name = "(none: calls in progress, 0: no limit)"},
    {.name = "overload_shedding", .type = FT_BOOL, .offset = SECURITY(overload_shedding),
     .def = 1, .vos_name = "(none: 503 to new calls while behind on received SIP)"},
    {0},
};

#define TLS(f) offsetof(struct switch_def, tls) + offsetof(struct tls_settings, f)

/* Offsets from the start of struct switch_def, like sip_fields. */
static const struct field tls_fields[] = {
    {.name = "certificate", .type = FT_STRING, .offset = TLS(certificate)},
    {.name = "key", .type = FT_STRING, .offset = TLS(key)},
    {.name = "ca", .type = FT_STRING, .offset = TLS(ca)},
    {.name = "verify_peer", .type = FT_BOOL, .offset = TLS(verify_peer), .def = 0},
    {.name = "handshake_rate", .type = FT_INT, .offset = TLS(handshake_rate), .min = 0,
     .max = 100000, .def = 20},
    {0},
};

#define HEP(f) offsetof(struct switch_def, hep) + offsetof(struct hep_settings, f)

/* Offsets from the start of struct switch_def, like sip_fields. */
static const struct field hep_fields[] = {
    {.name = "address", .type = FT_STRING, .offset = HEP(address)},
    {.name = "id", .type = FT_INT, .offset = HEP(id), .min = 0, .max = 2147483647,
     .def = 1},
    {0},
};

static const struct field switch_fields[] = {
    {.name = "listen", .type = FT_STRLIST, .offset = offsetof(struct switch_def, listen)},
    {.name = "sip", .type = FT_SECTION, .offset = 0, .section = sip_fields},
    {.name = "security", .type = FT_SECTION, .offset = 0, .section = security_fields},
    {.name = "metrics",
     .type = FT_STRING,
     .offset = offsetof(struct switch_def, metrics)},
    {.name = "tls", .type = FT_SECTION, .offset = 0, .section = tls_fields},
    {.name = "hep", .type = FT_SECTION, .offset = 0, .section = hep_fields},
    {0},
};

#define REG(f) offsetof(struct registration_def, f)
static const struct field registration_fields[] = {
    {.name = "server", .type = FT_STRING, .offset = REG(server), .required = true},
    {.name = "port", .type = FT_INT, .offset = REG(port), .min = 1, .max = 65535,
     .def = 5060},
    {.name = "username", .type = FT_STRING, .offset = REG(username), .required = true},
    {.name = "password", .type = FT_STRING, .offset = REG(password), .required = true},
    {.name = "auth_username", .type = FT_STRING, .offset = REG(auth_username)},
    {.name = "hostname", .type = FT_STRING, .offset = REG(hostname)},
    {.name = "proxy", .type = FT_STRING, .offset = REG(proxy)},
    {.name = "local_ip", .type = FT_STRING, .offset = REG(local_ip)},
    {.name = "user_agent", .type = FT_STRING, .offset = REG(user_agent)},
    {.name = "expires", .type = FT_INT_OR_AUTO, .offset = REG(expires), .min = 20,
     .max = 7200, .def = CONFIG_INHERIT, .vos_name = "SS_SIP_USER_AGENT_EXPIRE"},
    {.name = "retry_delay", .type = FT_INT_OR_HOOK, .offset = REG(retry_delay), .min = 30,
     .max = 600, .def = CONFIG_INHERIT, .hook_offset = REG(retry_delay_hook),
     .vos_name = "SS_SIP_USER_AGENT_RETRY_DELAY"},
    {.name = "mode", .type = FT_ENUM, .offset = REG(mode), .choices = reg_mode_choices,
     .def = REG_MODE_STATIC},
    {.name = "privacy", .type = FT_ENUM, .offset = REG(privacy), .choices = privacy_choices,
     .def = CONFIG_INHERIT, .vos_name = "SS_SIP_USER_AGENT_PRIVACY"},
    {.name = "enabled", .type = FT_BOOL, .offset = REG(enabled), .def = 1},
    {.name = "transport", .type = FT_ENUM, .offset = REG(transport), .choices = transport_choices,
     .def = TRANSPORT_UDP},
    {0},
};

#define RGW(f) offsetof(struct routing_gateway_def, f)
static const struct field routing_gateway_fields[] = {
    {.name = "type", .type = FT_ENUM, .offset = RGW(type), .choices = rgw_type_choices,
     .def = RGW_STATIC},
    {.name = "address", .type = FT_STRING, .offset = RGW(address)},
    {.name = "registration", .type = FT_STRING, .offset = RGW(registration)},
    {.name = "account", .type = FT_STRING, .offset = RGW(account)},
    {.name = "prefixes", .type = FT_STRLIST, .offset = RGW(prefixes)},
    {.name = "priority", .type = FT_INT, .offset = RGW(priority), .min = 0, .max = 65535,
     .def = 1},
    {.name = "line_limit", .type = FT_INT, .offset = RGW(line_limit), .min = 0,
     .max = 1000000, .def = CONFIG_UNLIMITED},
    {.name = "invite_use_contact", .type = FT_TRISTATE, .offset = RGW(invite_use_contact),
     .def = TRI_INHERIT, .vos_name = "SS_SIP_ROUTING_GATEWAY_INVITE_USE_CONTACT"},
    {.name = "callee_rewrite", .type = FT_REWRITES, .offset = RGW(callee_rewrite)},
    {.name = "reply_address", .type = FT_ENUM, .offset = RGW(reply_address),
     .choices = reply_choices, .def = REPLY_SOCKET},
    {.name = "request_address", .type = FT_ENUM, .offset = RGW(request_address),
     .choices = request_choices, .def = REQUEST_SOCKET},
    {.name = "options_check", .type = FT_INT_OR_FALSE, .offset = RGW(options_check),
     .min = 1, .max = 3600, .def = 0},
    {.name = "failover_codes", .type = FT_STATUS_SET, .offset = RGW(failover_codes),
     .min = 300, .max = 699},
    {.name = "transport", .type = FT_ENUM, .offset = RGW(transport), .choices = transport_choices,
     .def = TRANSPORT_UDP},
    {.name = "peer_number_information", .type = FT_ENUM_OR_HOOK,
     .offset = RGW(peer_number_information), .choices = caller_choices,
     .def = CALLER_FROM_FROM, .hook_offset = RGW(peer_number_hook),
     .vos_name = "Peer number information"},
    {.name = "username", .type = FT_STRING, .offset = RGW(username)},
    {.name = "password", .type = FT_STRING, .offset = RGW(password)},
    {.name = "auth_username", .type = FT_STRING, .offset = RGW(auth_username)},
    {0},
};

#define MGW(f) offsetof(struct mapping_gateway_def, f)
static const struct field mapping_gateway_fields[] = {
    {.name = "type", .type = FT_ENUM, .offset = MGW(type), .choices = mgw_type_choices,
     .def = MGW_STATIC},
    {.name = "addresses", .type = FT_STRLIST, .offset = MGW(addresses)},
    {.name = "callee_from", .type = FT_ENUM_OR_HOOK, .offset = MGW(callee_from),
     .choices = callee_choices, .def = CALLEE_FROM_TO, .hook_offset = MGW(callee_hook)},
    {.name = "caller_from", .type = FT_ENUM_OR_HOOK, .offset = MGW(caller_from),
     .choices = caller_choices, .def = CALLER_FROM_FROM, .hook_offset = MGW(caller_hook)},
    {.name = "line_limit", .type = FT_INT, .offset = MGW(line_limit), .min = 0,
     .max = 1000000, .def = CONFIG_UNLIMITED},
    {.name = "digest", .type = FT_ENUM, .offset = MGW(digest),
     .choices = endpoint_digest_choices, .def = CONFIG_INHERIT},
    {0},
};

static const struct field account_fields[] = {
    {.name = "password", .type = FT_STRING, .offset = offsetof(struct account_def, password),
     .required = true},
    {.name = "mapping_gateway", .type = FT_STRING,
     .offset = offsetof(struct account_def, mapping_gateway), .required = true},
    {.name = "digest", .type = FT_ENUM, .offset = offsetof(struct account_def, digest),
     .choices = endpoint_digest_choices, .def = CONFIG_INHERIT},
    {0},
};

static const struct kind_schema schemas[KIND_COUNT] = {
    {KIND_SWITCH, "switch", sizeof(struct switch_def), false, switch_fields},
    {KIND_REGISTRATION, "registration", sizeof(struct registration_def), true,
     registration_fields},
    {KIND_ROUTING_GATEWAY, "routing_gateway", sizeof(struct routing_gateway_def), true,
     routing_gateway_fields},
    {KIND_MAPPING_GATEWAY, "mapping_gateway", sizeof(struct mapping_gateway_def), true,
     mapping_gateway_fields},
    {KIND_ACCOUNT, "account", sizeof(struct account_def), true, account_fields},
};

const struct kind_schema *config_schema(enum config_kind kind)
{
    return kind < KIND_COUNT ? &schemas[kind] : NULL;
}

/* ---- Definitions ----------------------------------------------------------- */

#define AT(def, off, type) ((type *)((char *)(def) + (off)))

static void fields_default(void *def, const struct field *fields)
{
    for (const struct field *f = fields; f->name; f++) {
        switch (f->type) {
        case FT_INT:
        case FT_INT_OR_AUTO:
        case FT_INT_OR_FALSE:
        case FT_INT_OR_HOOK:
        case FT_TRISTATE:
        case FT_ENUM:
        case FT_ENUM_OR_HOOK:
            *AT(def, f->offset, int) = (int)f->def;
            break;
        case FT_BOOL:
            *AT(def, f->offset, bool) = f->def != 0;
            break;
        case FT_SECTION:
            fields_default(def, f->section);
            break;
        case FT_STATUS_SET: {
            struct status_set *set = AT(def, f->offset, struct status_set);
            set->given = f->codes != NULL;
            for (const short *code = f->codes; code && *code; code++)
                status_set_add(set, *code);
            break;
        }
        default:
            break; /* zeroed by calloc */
        }
    }
}

static void fields_free(void *def, const struct field *fields)
{
    for (const struct field *f = fields; f->name; f++) {
        switch (f->type) {
        case FT_STRING:
            free(*AT(def, f->offset, char *));
            break;
        case FT_STRLIST: {
            struct strlist *l = AT(def, f->offset, struct strlist);
            for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
            free(l->v);
            break;
        }
        case FT_REWRITES: {
            struct rewrite_list *l = AT(def, f->offset, struct rewrite_list);
            for (size_t i = 0; i < l->n; i++) {
                free(l->v[i].pattern);
                free(l->v[i].replacement);
            }
            free(l->v);
            break;
        }
        case FT_INT_OR_HOOK:
        case FT_ENUM_OR_HOOK:
            free(AT(def, f->hook_offset, struct config_hook)->signature);
            break;
        case FT_SECTION:
            fields_free(def, f->section);
            break;
        default:
            break;
        }
    }
}

struct def_head *config_def_new(enum config_kind kind, const char *name, const char *file,
                                int line)
{
    const struct kind_schema *schema = config_schema(kind);
    if (!schema)
        return NULL;
    struct def_head *def = calloc(1, schema->size);
    if (!def)
        return NULL;
    def->kind = kind;
    def->line = line;
    if ((name && !(def->name = strdup(name))) || (file && !(def->file = strdup(file)))) {
        free(def->name);
        free(def);
        return NULL;
    }
    fields_default(def, schema->fields);
    return def;
}

void config_def_free(struct def_head *def)
{
    if (!def)
        return;
    fields_free(def, schemas[def->kind].fields);
    free(def->name);
    free(def->file);
    free(def);
}

static int fields_check_required(const void *def, const struct field *fields, char *err,
                                 size_t errlen)
{
    for (const struct field *f = fields; f->name; f++) {
        if (f->required && f->type == FT_STRING && !*AT(def, f->offset, char *const)) {
            snprintf(err, errlen, "missing required field '%s'", f->name);
            return -1;
        }
    }
    return 0;
}

/* "host:port", with a port in range. */
static int check_host_port(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || addr[0] == ':')
        return -1;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    return (*end || port < 1 || port > 65535) ? -1 : 0;
}

int config_def_check(const struct def_head *def, char *err, size_t errlen)
{
    if (fields_check_required(def, schemas[def->kind].fields, err, errlen) < 0)
        return -1;
    switch (def->kind) {
    case KIND_SWITCH: {
        const struct switch_def *sw = (const void *)def;
        for (size_t i = 0; i < sw->listen.n; i++) {
            char proto[8], host[64];
            int port;
            if (config_parse_listen(sw->listen.v[i], proto, sizeof proto, host, sizeof host,
                                    &port) < 0) {
                snprintf(err, errlen,
                         "listen: '%s' is not udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT",
                         sw->listen.v[i]);
                return -1;
            }
            if (strcmp(proto, "tls") == 0 && !sw->tls.certificate) {
                snprintf(err, errlen, "listen: '%s' needs tls.certificate and tls.key",
                         sw->listen.v[i]);
                return -1;
            }
        }
        char mhost[64];
        int mport;
        if (sw->metrics &&
            metrics_parse_address(sw->metrics, mhost, sizeof mhost, &mport) < 0) {
            snprintf(err, errlen, "metrics: '%s' is not IP:PORT (say \"127.0.0.1:9464\")",
                     sw->metrics);
            return -1;
        }
        if (sw->hep.address &&
            metrics_parse_address(sw->hep.address, mhost, sizeof mhost, &mport) < 0) {
            snprintf(err, errlen,
                     "hep.address: '%s' is not IP:PORT (say \"127.0.0.1:9060\")",
                     sw->hep.address);
            return -1;
        }
        if (sw->sip.session_ttl && sw->sip.session_min_se > sw->sip.session_ttl) {
            snprintf(err, errlen, "sip.session_min_se %d is above sip.session_ttl %d",
                     sw->sip.session_min_se, sw->sip.session_ttl);
            return -1;
        }
        /* The files themselves, now: a renewed certificate that does not
         * load is refused like any other mistake, and the running one stays. */
        if (tlsfiles_check(sw->tls.certificate, sw->tls.key, sw->tls.ca, err, errlen) < 0)
            return -1;
        break;
    }
    case KIND_ROUTING_GATEWAY: {
        const struct routing_gateway_def *g = (const void *)def;
        if (g->type == RGW_REGISTRATION && !g->registration) {
            snprintf(err, errlen, "type \"registration\" needs field 'registration'");
            return -1;
        }
        if (g->type != RGW_REGISTRATION && g->registration) {
            snprintf(err, errlen, "field 'registration' needs type \"registration\"");
            return -1;
        }
        if (g->type == RGW_DYNAMIC && !g->account) {
            snprintf(err, errlen, "type \"dynamic\" needs field 'account'");
            return -1;
        }
        if (g->type != RGW_DYNAMIC && g->account) {
            snprintf(err, errlen, "field 'account' needs type \"dynamic\"");
            return -1;
        }
        if (g->type == RGW_DYNAMIC && g->address) {
            snprintf(err, errlen,
                     "type \"dynamic\" takes no 'address': it is where its account "
                     "registered");
            return -1;
        }
        if (g->type != RGW_DYNAMIC && !g->address) {
            snprintf(err, errlen, "missing required field 'address'");
            return -1;
        }
        if ((g->username || g->auth_username) && !g->password) {
            snprintf(err, errlen, "field '%s' needs field 'password'",
                     g->username ? "username" : "auth_username");
            return -1;
        }
        if (g->password && !g->username) {
            snprintf(err, errlen, "field 'password' needs field 'username'");
            return -1;
        }
        if (g->address && check_host_port(g->address) < 0) {
            snprintf(err, errlen, "address '%s' is not host:port", g->address);
            return -1;
        }
        break;
    }
    case KIND_MAPPING_GATEWAY: {
        const struct mapping_gateway_def *m = (const void *)def;
        if (m->type == MGW_STATIC && m->addresses.n == 0) {
            snprintf(err, errlen, "type \"static\" needs field 'addresses'");
            return -1;
        }
        break;
    }
    default:
        break;
    }
    return 0;
}

int config_parse_listen(const char *uri, char *proto, size_t protolen, char *host,
                        size_t hostlen, int *port)
{
    const char *c1 = strchr(uri, ':');
    if (!c1)
        return -1;
    size_t plen = (size_t)(c1 - uri);
    if (plen >= protolen)
        return -1;
    memcpy(proto, uri, plen);
    proto[plen] = '\0';
    if (strcmp(proto, "udp") && strcmp(proto, "tcp") && strcmp(proto, "tls"))
        return -1;
    const char *h = c1 + 1;
    const char *c2;
    size_t hlen;
    if (*h == '[') { /* [v6]:port */
        const char *close = strchr(h, ']');
        if (!close || close[1] != ':')
            return -1;
        hlen = (size_t)(close - h - 1);
        h++;
        c2 = close + 1;
    } else {
        c2 = strrchr(h, ':');
        if (!c2)
            return -1;
        hlen = (size_t)(c2 - h);
    }
    if (hlen == 0 || hlen >= hostlen)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end;
    long p = strtol(c2 + 1, &end, 10);
    if (c2[1] == '\0' || *end || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

const struct strlist *config_listen(const struct config *cfg, const struct strlist *given)
{
    static char *defaults[] = {"udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"};
    static const struct strlist default_listen = {2, defaults};
    if (given && given->n)
        return given;
    const struct switch_def *sw = cfg ? config_switch(cfg) : NULL;
    return sw && sw->listen.n ? &sw->listen : &default_listen;
}

/* The address family of an IP literal (brackets allowed), its bytes in
 * `bin`; 0 when `host` is no IP literal. */
static int ip_parse(const char *host, unsigned char bin[16])
{
    char buf[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n >= sizeof buf)
        return 0;
    memcpy(buf, host, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, bin) == 1)
        return AF_INET;
    if (inet_pton(AF_INET6, buf, bin) == 1)
        return AF_INET6;
    return 0;
}

bool config_ip_equal(const char *a, const char *b)
{
    unsigned char x[16], y[16];
    int fa = ip_parse(a, x), fb = ip_parse(b, y);
    if (!fa || !fb)
        return !fa && !fb && strcasecmp(a, b) == 0;
    return fa == fb && memcmp(x, y, fa == AF_INET ? 4 : 16) == 0;
}

bool config_ip_any(const char *host)
{
    static const unsigned char zero[16];
    unsigned char bin[16];
    int f = ip_parse(host, bin);
    return strcmp(host, "*") == 0 ||
           (f && memcmp(bin, zero, f == AF_INET ? 4 : 16) == 0);
}

/* Does some `proto` listener of `listen` take `ip`: one on that IP, or one
 * on every address of its family? */
static bool listens_on(const struct strlist *listen, const char *proto, const char *ip)
{
    unsigned char bin[16];
    int family = ip_parse(ip, bin);
    for (size_t i = 0; i < listen->n; i++) {
        char p[8], host[64];
        int port;
        if (config_parse_listen(listen->v[i], p, sizeof p, host, sizeof host, &port) < 0 ||
            strcmp(p, proto) != 0)
            continue;
        if (config_ip_equal(host, ip) ||
            (family && config_ip_any(host) && ip_parse(host, bin) == family))
            return true;
    }
    return false;
}

/* ---- Policy sets -------------------------------------------------------- */

/* Definitions of one kind, in policy order, with an open-addressing hash of
 * their names (slots hold index + 1; 0 is empty) so lookups, duplicate
 * checks and reload diffs stay O(1) per definition at 10,000 entries. */
struct def_array {
    size_t n, cap;
    struct def_head **v;
    size_t nslots; /* a power of two, at least twice n */
    size_t *slots;
};

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Index of `name` in a, or -1. */
static long def_index(const struct def_array *a, const char *name)
{
    if (!a->nslots || !name)
        return -1;
    for (size_t i = name_hash(name) & (a->nslots - 1);; i = (i + 1) & (a->nslots - 1)) {
        size_t slot = a->slots[i];
        if (!slot)
            return -1;
        if (strcmp(a->v[slot - 1]->name, name) == 0)
            return (long)slot - 1;
    }
}

static void slots_insert(size_t *slots, size_t nslots, const char *name, size_t index)
{
    size_t i = name_hash(name) & (nslots - 1);
    while (slots[i])
        i = (i + 1) & (nslots - 1);
    slots[i] = index + 1;
}

/* Make room for one more name. Returns 0 or -ENOMEM. */
static int slots_reserve(struct def_array *a)
{
    if (a->nslots >= 2 * (a->n + 1))
        return 0;
    size_t nslots = a->nslots ? a->nslots * 2 : 16;
    size_t *slots = calloc(nslots, sizeof *slots);
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i]->name)
            slots_insert(slots, nslots, a->v[i]->name, i);
    free(a->slots);
    a->slots = slots;
    a->nslots = nslots;
    return 0;
}

struct config {
    struct def_array kinds[KIND_COUNT];
};

struct config *config_new(void)
{
    return calloc(1, sizeof(struct config));
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (int k = 0; k < KIND_COUNT; k++) {
        for (size_t i = 0; i < cfg->kinds[k].n; i++)
            config_def_free(cfg->kinds[k].v[i]);
        free(cfg->kinds[k].v);
        free(cfg->kinds[k].slots);
    }
    free(cfg);
}

const struct def_head *config_find(const struct config *cfg, enum config_kind kind,
                                   const char *name)
{
    const struct def_array *a = &cfg->kinds[kind];
    long i = def_index(a, name);
    return i < 0 ? NULL : a->v[i];
}

/* O(1) expected: the duplicate check is a hash lookup. */
int config_add(struct config *cfg, struct def_head *def, char *err, size_t errlen)
{
    struct def_array *a = &cfg->kinds[def->kind];
    const struct def_head *prior =
        def->kind == KIND_SWITCH ? (a->n ? a->v[0] : NULL)
                                 : config_find(cfg, def->kind, def->name);
    if (prior) {
        if (def->kind == KIND_SWITCH)
            snprintf(err, errlen, "switch is already defined at %s:%d", prior->file,
                     prior->line);
        else
            snprintf(err, errlen, "duplicate %s \"%s\" (first defined at %s:%d)",
                     schemas[def->kind].keyword, def->name, prior->file, prior->line);
        return -EEXIST;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        struct def_head **grown = realloc(a->v, cap * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        a->v = grown;
        a->cap = cap;
    }
    if (def->name && slots_reserve(a) < 0)
        return -ENOMEM;
    if (def->name)
        slots_insert(a->slots, a->nslots, def->name, a->n);
    a->v[a->n++] = def;
    return 0;
}

int config_finish(struct config *cfg, char *err, size_t errlen)
{
    if (cfg->kinds[KIND_SWITCH].n == 0) {
        struct def_head *sw = config_def_new(KIND_SWITCH, NULL, "(default)", 0);
        if (!sw || config_add(cfg, sw, err, errlen) < 0) {
            config_def_free(sw);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    for (size_t i = 0; i < cfg->kinds[KIND_ROUTING_GATEWAY].n; i++) {
        const struct routing_gateway_def *g =
            (const void *)cfg->kinds[KIND_ROUTING_GATEWAY].v[i];
        if (g->registration && !config_find(cfg, KIND_REGISTRATION, g->registration)) {
            snprintf(err, errlen, "%s:%d: routing_gateway \"%s\": no registration \"%s\"",
                     g->head.file, g->head.line, g->head.name, g->registration);
            return -1;
        }
        if (g->account && !config_find(cfg, KIND_ACCOUNT, g->account)) {
            snprintf(err, errlen, "%s:%d: routing_gateway \"%s\": no account \"%s\"",
                     g->head.file, g->head.line, g->head.name, g->account);
            return -1;
        }
    }
    for (size_t i = 0; i < cfg->kinds[KIND_ACCOUNT].n; i++) {
        const struct account_def *acc = (const void *)cfg->kinds[KIND_ACCOUNT].v[i];
        const struct mapping_gateway_def *m = (const void *)config_find(
            cfg, KIND_MAPPING_GATEWAY, acc->mapping_gateway);
        if (!m) {
            snprintf(err, errlen, "%s:%d: account \"%s\": no mapping_gateway \"%s\"",
                     acc->head.file, acc->head.line, acc->head.name, acc->mapping_gateway);
            return -1;
        }
        if (m->type != MGW_REGISTER) {
            snprintf(err, errlen,
                     "%s:%d: account \"%s\": mapping_gateway \"%s\" is not of type "
                     "\"register\"",
                     acc->head.file, acc->head.line, acc->head.name, acc->mapping_gateway);
            return -1;
        }
    }
    return 0;
}

int config_check_local_ips(const struct config *cfg, const struct strlist *listen, char *err,
                           size_t errlen)
{
    const struct def_array *regs = &cfg->kinds[KIND_REGISTRATION];
    for (size_t i = 0; i < regs->n; i++) {
        const struct registration_def *d = (const void *)regs->v[i];
        if (!d->local_ip || listens_on(listen, "udp", d->local_ip))
            continue;
        /* "...: local_ip X is not one of the listen addresses (UDP: a, b)" */
        int n = snprintf(err, errlen,
                         "%s:%d: registration \"%s\": local_ip %s is not one of the listen "
                         "addresses (UDP: ",
                         d->head.file, d->head.line, d->head.name, d->local_ip);
        const char *sep = "";
        for (size_t k = 0; k < listen->n && n > 0 && (size_t)n < errlen; k++) {
            if (strncmp(listen->v[k], "udp:", 4) != 0)
                continue;
            n += snprintf(err + n, errlen - (size_t)n, "%s%s", sep, listen->v[k] + 4);
            sep = ", ";
        }
        if (n > 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n, "%s)", *sep ? "" : "none");
        return -1;
    }
    return 0;
}

const struct switch_def *config_switch(const struct config *cfg)
{
    return cfg->kinds[KIND_SWITCH].n ? (const void *)cfg->kinds[KIND_SWITCH].v[0] : NULL;
}

size_t config_count(const struct config *cfg, enum config_kind kind)
{
    return cfg->kinds[kind].n;
}

const struct def_head *config_at(const struct config *cfg, enum config_kind kind, size_t i)
{
    return i < cfg->kinds[kind].n ? cfg->kinds[kind].v[i] : NULL;
}

/* ---- Comparison ---------------------------------------------------------- */

static bool str_equal(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool fields_equal(const void *a, const void *b, const struct field *fields)
{
    for (const struct field *f = fields; f->name; f++) {
        switch (f->type) {
        case FT_STRING:
            if (!str_equal(*AT(a, f->offset, char *const), *AT(b, f->offset, char *const)))
                return false;
            break;
        case FT_INT_OR_HOOK:
        case FT_ENUM_OR_HOOK:
            if (!str_equal(AT(a, f->hook_offset, const struct config_hook)->signature,
                           AT(b, f->hook_offset, const struct config_hook)->signature))
                return false;
            __attribute__((fallthrough)); /* the number too */
        case FT_INT:
        case FT_INT_OR_AUTO:
        case FT_INT_OR_FALSE:
        case FT_TRISTATE:
        case FT_ENUM:
            if (*AT(a, f->offset, const int) != *AT(b, f->offset, const int))
                return false;
            break;
        case FT_BOOL:
            if (*AT(a, f->offset, const bool) != *AT(b, f->offset, const bool))
                return false;
            break;
        case FT_STRLIST: {
            const struct strlist *x = AT(a, f->offset, const struct strlist);
            const struct strlist *y = AT(b, f->offset, const struct strlist);
            if (x->n != y->n)
                return false;
            for (size_t i = 0; i < x->n; i++)
                if (!str_equal(x->v[i], y->v[i]))
                    return false;
            break;
        }
        case FT_REWRITES: {
            const struct rewrite_list *x = AT(a, f->offset, const struct rewrite_list);
            const struct rewrite_list *y = AT(b, f->offset, const struct rewrite_list);
            if (x->n != y->n)
                return false;
            for (size_t i = 0; i < x->n; i++)
                if (!str_equal(x->v[i].pattern, y->v[i].pattern) ||
                    !str_equal(x->v[i].replacement, y->v[i].replacement))
                    return false;
            break;
        }
        case FT_SECTION:
            if (!fields_equal(a, b, f->section))
                return false;
            break;
        case FT_STATUS_SET: {
            const struct status_set *x = AT(a, f->offset, const struct status_set);
            const struct status_set *y = AT(b, f->offset, const struct status_set);
            if (x->given != y->given || memcmp(x->bits, y->bits, sizeof x->bits) != 0)
                return false;
            break;
        }
        }
    }
    return true;
}

bool config_def_equal(const struct def_head *a, const struct def_head *b)
{
    if (a->kind != b->kind || !str_equal(a->name, b->name))
        return false;
    return fields_equal(a, b, schemas[a->kind].fields);
}

struct config_diff config_diff(const struct config *old, const struct config *now,
                               config_diff_h *fn, void *arg)
{
    struct config_diff d = {0};
    for (int k = 0; k < KIND_COUNT; k++) {
        size_t n = now ? now->kinds[k].n : 0;
        for (size_t i = 0; i < n; i++) {
            const struct def_head *def = now->kinds[k].v[i];
            const struct def_head *before = NULL;
            if (old)
                before = k == KIND_SWITCH ? &config_switch(old)->head
                                          : config_find(old, (enum config_kind)k, def->name);
            enum diff_verdict v = !before                         ? DIFF_ADDED
                                  : config_def_equal(before, def) ? DIFF_UNCHANGED
                                                                  : DIFF_CHANGED;
            if (v == DIFF_ADDED)
                d.added++;
            else if (v == DIFF_CHANGED)
                d.changed++;
            else
                d.unchanged++;
            if (fn)
                fn(v, before, def, arg);
        }
        size_t m = old ? old->kinds[k].n : 0;
        for (size_t i = 0; i < m; i++) {
            const struct def_head *def = old->kinds[k].v[i];
            bool kept = now && (k == KIND_SWITCH
                                    ? config_switch(now) != NULL
                                    : config_find(now, (enum config_kind)k, def->name) != NULL);
            if (!kept) {
                d.removed++;
                if (fn)
                    fn(DIFF_REMOVED, def, NULL, arg);
            }
        }
    }
    return d;
}

void config_diff_summary(const struct config_diff *d, char *out, size_t outlen)
{
    snprintf(out, outlen, "%u added, %u changed, %u removed, %u unchanged", d->added,
             d->changed, d->removed, d->unchanged);
}
