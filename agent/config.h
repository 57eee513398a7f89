/* config.h - modelprovd's settings: built-in defaults, then the INI file
 * (/etc/modelprov/agent.conf, section [agent]), then the command line.
 * Config keys are the long option names ("watch = /models", repeatable;
 * "settle = 2"), see daemon/options.h. */
#pragma once

#include <stdbool.h>

#include "util/error.h"

#define AGENT_CONFIG_DEFAULT "/etc/modelprov/agent.conf"

typedef struct agent_config {
        char **watch;                   /* NULL: discover the usual caches (roots.h) */
        char *state_dir;
        char *collector;                /* NULL: no collector, local only (outbox grows, bounded) */
        char *enroll_secret_file;
        char *ca_file;
        bool insecure_loopback;
        char *client_cert;
        char *client_key;
        char *server_name;
        unsigned settle_ms;
        char *catalog;                  /* local scans; NULL: the one fetched from the collector */
        unsigned workers;
        unsigned read_rate_mb;          /* MB/s over all workers; 0: unlimited */
        unsigned rescan_s;              /* periodic stat-only rescan; 0: never */
        unsigned heartbeat_s;
        unsigned outbox_max_events;
        int log_level;
} agent_config;

typedef enum agent_action {
        AGENT_RUN,
        AGENT_HELP,
        AGENT_VERSION,
} agent_action;

/* Fills c from defaults, the config file and argv, and checks the result:
 * a collector needs an enroll secret and TLS (or --insecure-loopback
 * towards loopback).  Errors are sentences for the operator. */
int agent_config_load(int argc, char **argv, agent_config *c, agent_action *action, mp_error *err);
void agent_config_done(agent_config *c);
void agent_config_usage(void);
