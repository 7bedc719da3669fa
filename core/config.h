/* Policy definitions as C data.
 *
 * A policy file defines a switch, registrations, routing gateways, mapping
 * gateways and accounts. Whatever loads the policy (the Lua layer) fills the
 * structs below through the field schemas declared here, so the rules that
 * say what a valid definition is (names, types, VOS3000's ranges and
 * defaults) live in one place: config.c.
 *
 * A `struct config` is one complete, validated policy set. It is immutable
 * once built; a reload builds a new one and config_diff() says what changed.
 * Later modules (registrations, gateways, calls) take their definitions from
 * it. */
#ifndef MOON_CONFIG_H
#define MOON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum config_kind {
    KIND_SWITCH,
    KIND_REGISTRATION,
    KIND_ROUTING_GATEWAY,
    KIND_MAPPING_GATEWAY,
    KIND_ACCOUNT,
    KIND_COUNT
};

/* "auto" for expiry fields, and "inherit the switch setting" for optional
 * per-entry overrides. */
#define CONFIG_AUTO 0
#define CONFIG_INHERIT (-1)
#define CONFIG_UNLIMITED (-1)

struct strlist {
    size_t n;
    char **v;
};

struct rewrite_rule {
    char *pattern;
    char *replacement;
};

struct rewrite_list {
    size_t n;
    struct rewrite_rule *v;
};

/* A set of SIP status codes (failover_codes) as a bitmap over 100..699: a
 * lookup is a shift, a reload compares it with memcmp, nothing is
 * allocated. `given` is false while the policy left the field out (a
 * gateway then follows the switch). */
struct status_set {
    bool given;
    uint64_t bits[10]; /* bit (code - 100) */
};

static inline bool status_set_has(const struct status_set *s, int code)
{
    return code >= 100 && code < 700 &&
           ((s->bits[(code - 100) / 64] >> ((code - 100) % 64)) & 1);
}

static inline void status_set_add(struct status_set *s, int code)
{
    if (code >= 100 && code < 700)
        s->bits[(code - 100) / 64] |= (uint64_t)1 << ((code - 100) % 64);
}

/* A policy function (for example a registration's retry_delay). The core
 * never calls it: it hands `ref` back to whoever installed it. `signature`
 * identifies the function's code, so a reload can tell whether it changed. */
struct config_hook {
    int ref;          /* 0: none */
    char *signature;  /* owned */
};

enum privacy_mode { PRIVACY_IGNORE, PRIVACY_ID, PRIVACY_NONE };
enum reg_mode { REG_MODE_STATIC, REG_MODE_DYNAMIC };
enum rgw_type { RGW_STATIC, RGW_DYNAMIC, RGW_REGISTRATION };
enum mgw_type { MGW_STATIC, MGW_REGISTER };
enum reply_address { REPLY_SOCKET, REPLY_VIA, REPLY_VIA_PORT };
enum request_address { REQUEST_SOCKET, REQUEST_CONTACT, REQUEST_CONTACT_PORT };
enum callee_from { CALLEE_FROM_TO, CALLEE_FROM_REQUEST_LINE };
enum caller_from { CALLER_FROM_FROM, CALLER_FROM_RPID, CALLER_FROM_DISPLAY, CALLER_FROM_PAI };
enum tristate { TRI_INHERIT = -1, TRI_OFF = 0, TRI_ON = 1 };
/* The display name in the B-leg From (SS_SIP_E164_DISPLAY_FROM). */
enum display_from {
    DISPLAY_FROM_IGNORE, /* "ignore": the caller's display name, as it came */
    DISPLAY_FROM_CALLER, /* "caller": the caller number */
    DISPLAY_FROM_NONE,   /* "none": no display name */
};
/* What requests the switch starts travel over: "udp", "tcp", "tls". */
enum sip_transport { TRANSPORT_UDP, TRANSPORT_TCP, TRANSPORT_TLS };
/* Digest algorithms the registrar offers endpoints, most preferred first.
 * "md5" is the default: common clients (SIPp, baresip 1.0) fail on a
 * SHA-256 challenge; accounts and mapping gateways may choose another. */
enum endpoint_digest {
    ENDPOINT_DIGEST_SHA256_MD5, /* "sha256,md5": RFC 8760 */
    ENDPOINT_DIGEST_MD5_SHA256, /* "md5,sha256": for UAs that answer the first challenge */
    ENDPOINT_DIGEST_MD5,        /* "md5": for UAs that fail on any SHA-256 challenge */
    ENDPOINT_DIGEST_SHA256,     /* "sha256" */
};
/* How the registrar keeps NAT bindings' pinholes open (moonswitch's own). */
enum endpoint_keepalive {
    ENDPOINT_KEEPALIVE_OPTIONS, /* "options": an OPTIONS request; misses counted */
    ENDPOINT_KEEPALIVE_CRLF,    /* "crlf": RFC 5626 CRLF; no misses over UDP */
    ENDPOINT_KEEPALIVE_OFF,     /* "off" */
};

/* VOS3000 SS_SIP_* and SS_ENDPOINT_* parameters. */
struct sip_settings {
    int user_agent_expire;        /* SS_SIP_USER_AGENT_EXPIRE: CONFIG_AUTO or 20..7200 */
    int user_agent_retry_delay;   /* SS_SIP_USER_AGENT_RETRY_DELAY: 30..600 */
    bool user_agent_send_unregister; /* SS_SIP_USER_AGENT_SEND_UNREGISTER */
    int user_agent_privacy;       /* SS_SIP_USER_AGENT_PRIVACY: enum privacy_mode */
    bool routing_gateway_invite_use_contact; /* SS_SIP_ROUTING_GATEWAY_INVITE_USE_CONTACT */
    int endpoint_expire;          /* SS_ENDPOINT_EXPIRE: 300..3600 */
    int endpoint_nat_expire;      /* SS_ENDPOINT_NAT_EXPIRE: 20..3600 */
    int endpoint_register_retry;  /* SS_ENDPOINT_REGISTER_RETRY: 1..100 */
    int endpoint_register_suspend; /* SS_ENDPOINT_REGISTER_SUSPEND: 0..86400 s */
    bool endpoint_register_replace; /* SS_ENDPOINT_REGISTER_REPLACE */
    int endpoint_digest;          /* enum endpoint_digest (moonswitch's own) */
    int endpoint_keepalive;       /* enum endpoint_keepalive (moonswitch's own) */
    int endpoint_keepalive_interval; /* NAT keepalive period: 5..3600 s */
    int endpoint_keepalive_misses; /* unanswered keepalives that remove: 1..20 */
    int invite_timeout;           /* SIP INVITE timeout: 1..300 s */
    int call_progress_timeout;    /* SIP call progress timeout: 1..3600 s */
    int no_timer_reinvite_interval; /* SS_SIP_NO_TIMER_REINVITE_INTERVAL: the longest a call
                                       with a leg that runs no session timer stays up: 0 (no
                                       limit), 1..86400 s (alias max_call_duration) */
    int resend_interval;          /* SIP resend interval (RFC 3261 T1): 100..4000 ms */
    struct status_set failover_codes; /* final statuses that try the next gateway */
    int session_ttl;              /* SS_SIP_SESSION_TTL: Session-Expires offered, 0 (off) or
                                     90..86400 s */
    int session_update_segment;   /* SS_SIP_SESSION_UPDATE_SEGMENT: refresh every ttl/segment
                                     when the switch refreshes: 2..10 */
    int session_timeout_early_hangup; /* SS_SIP_SESSION_TIMEOUT_EARLY_HANGUP: hang up this long
                                         before the session expires: 0..3600 s */
    int session_min_se;           /* Min-SE the switch accepts and sends: 90..86400 s */
    int no_timer_options_interval; /* in-dialog OPTIONS to legs without a session timer:
                                      0 (off), 5..3600 s */
    int authentication_retry;     /* SS_SIP_AUTHENTICATION_RETRY: carrier challenges answered
                                     per call attempt or REGISTER: 0..10 */
    int publish_expire;           /* SS_SIP_PUBLISH_EXPIRE: 30..7200 s (PUBLISH is not served) */
    int e164_display_from;        /* SS_SIP_E164_DISPLAY_FROM: enum display_from */
    int route_timeout;            /* seconds route() and on_failure() may take: 1..60 */
};

/* Hostile traffic (moonswitch's own; the policy's `switch { security = {...} }`). */
struct security_settings {
    int source_rate; /* requests/s one non-gateway source may send: 0 (no limit)..1000000 */
    int source_ban;  /* seconds a source over source_rate is dropped: 1..2592000 */
    int max_calls;   /* calls in progress accepted, above it 503: 0 (no limit)..1000000 */
    bool overload_shedding; /* new calls get 503 while the switch is behind (overload.h) */
};

/* switch.tls: the switch's certificate and how it checks its peers'. */
struct tls_settings {
    char *certificate;  /* PEM chain, the switch's own first; NULL: none */
    char *key;          /* PEM private key of that certificate */
    char *ca;           /* file or directory of trusted CAs; NULL: the system's */
    bool verify_peer;   /* check the certificates of the peers the switch connects to */
    int handshake_rate; /* TLS handshakes one source IP may start per second; 0: no limit */
};

/* switch.hep: SIP capture to a Homer server (HEP version 3 over UDP). */
struct hep_settings {
    char *address; /* "IP:PORT" of the HEP collector; NULL: no capture */
    int id;        /* the capture agent id sent with every packet: 0..2147483647 */
};

/* Every definition starts with this header. */
struct def_head {
    enum config_kind kind;
    char *name;   /* NULL for the switch */
    char *file;   /* where it was defined, for messages */
    int line;
};

struct switch_def {
    struct def_head head;
    struct strlist listen; /* "udp:IP:PORT", "tcp:IP:PORT", "tls:IP:PORT" */
    struct sip_settings sip;
    struct security_settings security;
    char *metrics; /* "IP:PORT" of the Prometheus listener; NULL: none */
    struct tls_settings tls;
    struct hep_settings hep;
};

struct registration_def {
    struct def_head head;
    char *server;
    int port;
    char *username;
    char *password;
    char *auth_username; /* NULL: username */
    char *hostname;      /* NULL: server */
    char *proxy;
    char *local_ip;
    char *user_agent;
    int expires;         /* CONFIG_INHERIT, CONFIG_AUTO or 20..7200 */
    int retry_delay;     /* CONFIG_INHERIT or 30..600 */
    struct config_hook retry_delay_hook;
    int mode;            /* enum reg_mode */
    int privacy;         /* CONFIG_INHERIT or enum privacy_mode */
    bool enabled;
    int transport;       /* enum sip_transport */
};

struct routing_gateway_def {
    struct def_head head;
    int type;            /* enum rgw_type */
    char *address;       /* host:port; NULL for type dynamic */
    char *registration;  /* name of a registration, for type registration */
    char *account;       /* name of an account, for type dynamic */
    struct strlist prefixes;
    int priority;
    int line_limit;      /* CONFIG_UNLIMITED or 0..1000000 */
    int invite_use_contact; /* enum tristate */
    struct rewrite_list callee_rewrite;
    int reply_address;   /* enum reply_address */
    int request_address; /* enum request_address */
    int options_check;   /* seconds, 0: off */
    struct status_set failover_codes; /* not given: the switch's */
    int transport;       /* enum sip_transport */
    int peer_number_information; /* enum caller_from, for calls it sends us */
    struct config_hook peer_number_hook;
    char *username;      /* digest credentials for its challenges to our INVITEs */
    char *password;
    char *auth_username; /* NULL: username */
};

struct mapping_gateway_def {
    struct def_head head;
    int type;            /* enum mgw_type */
    struct strlist addresses;
    int callee_from;     /* enum callee_from */
    struct config_hook callee_hook;
    int caller_from;     /* enum caller_from */
    struct config_hook caller_hook;
    int line_limit;      /* CONFIG_UNLIMITED or 0..1000000 */
    int digest;          /* CONFIG_INHERIT or enum endpoint_digest, for its accounts */
};

struct account_def {
    struct def_head head;
    char *password;
    char *mapping_gateway;
    int digest;          /* CONFIG_INHERIT (its gateway's) or enum endpoint_digest */
};

/* ---- Schemas ----------------------------------------------------------- */

enum field_type {
    FT_STRING,        /* char * */
    FT_INT,           /* int, within [min, max] */
    FT_INT_OR_AUTO,   /* int: "auto" -> CONFIG_AUTO, else within [min, max] */
    FT_INT_OR_FALSE,  /* int: false -> 0, else within [min, max] */
    FT_INT_OR_HOOK,   /* int within [min, max], or a function (hook_offset) */
    FT_BOOL,          /* bool */
    FT_TRISTATE,      /* int: nil inherit, false, true */
    FT_ENUM,          /* int: index into choices */
    FT_ENUM_OR_HOOK,  /* int: index into choices, or a function (hook_offset) */
    FT_STRLIST,       /* struct strlist: an array of strings */
    FT_REWRITES,      /* struct rewrite_list: an array of {pattern, replacement} */
    FT_STATUS_SET,    /* struct status_set: an array of status codes within [min, max] */
    FT_SECTION,       /* a nested table described by `section` */
};

struct field {
    const char *name;
    enum field_type type;
    size_t offset;
    bool required;
    long min, max;
    long def;                   /* default of int-like, bool and enum fields */
    const char *const *choices; /* FT_ENUM, FT_ENUM_OR_HOOK: NULL-terminated */
    const struct field *section; /* FT_SECTION: NULL-name-terminated */
    size_t hook_offset;          /* FT_*_OR_HOOK: struct config_hook */
    const short *codes;          /* FT_STATUS_SET default, 0-terminated; NULL: not given */
    const char *vos_name;        /* the VOS3000 parameter, for documentation */
    const char *alias_of;        /* another name of that field: both may not be given */
};

struct kind_schema {
    enum config_kind kind;
    const char *keyword;  /* "registration", ... as written in policies */
    size_t size;          /* of the definition struct */
    bool named;           /* kind "name" { ... } rather than kind { ... } */
    const struct field *fields; /* terminated by a field with name NULL */
};

const struct kind_schema *config_schema(enum config_kind kind);

/* ---- Definitions -------------------------------------------------------- */

/* Allocate a definition of `kind` with every field at its default. The
 * caller fills it, then calls config_def_check() and config_add(). */
struct def_head *config_def_new(enum config_kind kind, const char *name,
                                const char *file, int line);
void config_def_free(struct def_head *def);

/* Checks that need the whole definition (required fields, combinations such
 * as type = "registration" needing `registration`). Returns 0, or -1 with a
 * message (without file:line) in `err`. */
int config_def_check(const struct def_head *def, char *err, size_t errlen);

/* ---- Policy sets ---------------------------------------------------------- */

struct config;

struct config *config_new(void);
void config_free(struct config *cfg);

/* Add a definition; the set takes ownership. Returns 0, or -EEXIST for a
 * duplicate name (or a second switch), with the earlier definition's file
 * and line in `err`, and then the caller still owns `def`. */
int config_add(struct config *cfg, struct def_head *def, char *err, size_t errlen);

/* Checks across definitions (a gateway's registration exists, an account's
 * mapping gateway exists and is of type register). Adds the default switch
 * when none was defined. Returns 0, or -1 with "file:line: message". */
int config_finish(struct config *cfg, char *err, size_t errlen);

const struct switch_def *config_switch(const struct config *cfg);
size_t config_count(const struct config *cfg, enum config_kind kind);
const struct def_head *config_at(const struct config *cfg, enum config_kind kind,
                                 size_t i);
const struct def_head *config_find(const struct config *cfg, enum config_kind kind,
                                   const char *name);

/* Compare two definitions of the same kind field by field (hooks by their
 * signature; file and line are ignored). */
bool config_def_equal(const struct def_head *a, const struct def_head *b);

struct config_diff {
    unsigned added, changed, removed, unchanged;
};

/* What changed from `old` (may be NULL) to `new`. `fn`, when not NULL, is
 * called for each definition with its verdict; for removed ones `now` is
 * NULL, for added ones `before` is NULL. O(n) in definitions. */
enum diff_verdict { DIFF_ADDED, DIFF_CHANGED, DIFF_REMOVED, DIFF_UNCHANGED };
typedef void config_diff_h(enum diff_verdict verdict, const struct def_head *before,
                           const struct def_head *now, void *arg);
struct config_diff config_diff(const struct config *old, const struct config *now,
                               config_diff_h *fn, void *arg);

/* "2 added, 1 changed, 0 removed, 7 unchanged" */
void config_diff_summary(const struct config_diff *d, char *out, size_t outlen);

/* Parse "udp:IP:PORT" (also tcp, tls). Returns 0 or -1. `host` gets the IP
 * without brackets. */
int config_parse_listen(const char *uri, char *proto, size_t protolen, char *host,
                        size_t hostlen, int *port);

/* The listen addresses in force: `given` (--listen) when it has any, else
 * the switch's `listen`, else udp and tcp on 127.0.0.1:5060. Points into
 * `given`, `cfg` or static storage. */
const struct strlist *config_listen(const struct config *cfg, const struct strlist *given);

/* Do two hosts name the same IP ("::1" and "[0::1]" do)? Hosts that are no
 * IP literal compare as text, without case. */
bool config_ip_equal(const char *a, const char *b);
/* "0.0.0.0", "::" or "*": a listener on every local address. */
bool config_ip_any(const char *host);

/* Each registration's local_ip must be an address the switch listens on
 * over UDP, what its REGISTERs travel over: a listener on that IP, or on
 * every address of its family (then the kernel chooses the source
 * address). Returns 0, or -1 with "file:line: message". O(registrations
 * with local_ip x listen addresses). */
int config_check_local_ips(const struct config *cfg, const struct strlist *listen, char *err,
                           size_t errlen);

#endif
