/* main.c - modelprov-collector: reads its settings, opens (and migrates)
 * the store, serves the Ingest and Query services until SIGTERM/SIGINT,
 * and tells systemd when it is ready and when it stops (Type=notify). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "collector/config.h"
#include "daemon/log.h"
#include "collector/server.h"
#include "collector/service.h"
#include "util/heap.h"
#include "util/macro.h"

#define EXIT_USAGE 2

/* Opens the store once before the workers do, so that creating it or
 * migrating its schema happens once, and a bad URL fails the start. */
static int prepare_store(const char *url, mp_error *err) {
        mp_store *s = NULL;
        int r = mp_store_open(url, &s, err);
        if (r < 0)
                return r;
        /* A PostgreSQL URL may carry a password: never into the journal. */
        _cleanup_(freep) char *shown = mp_store_url_redacted(url);
        log_info("store %s, schema version %d", shown ? shown : "(out of memory)", mp_store_schema_version(s));
        mp_store_close(s);
        return 0;
}

static unsigned default_threads(void) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n < 4 ? 4 : n > 64 ? 64 : (unsigned) n;
}

static int serve(const collector_config *cfg, collector_service *svc) {
        rpc_method methods[16];
        size_t n = 0;
        for (size_t i = 0; i < ingest_methods_count; i++)
                methods[n++] = ingest_methods[i];
        for (size_t i = 0; i < query_methods_count; i++)
                methods[n++] = query_methods[i];

        rpc_server_options o = {
                .listen = cfg->listen,
                .tls_cert_file = cfg->tls_cert,
                .tls_key_file = cfg->tls_key,
                .tls_client_ca_file = cfg->tls_client_ca,
                .max_message = (size_t) cfg->max_message_mib << 20,
                .threads = cfg->threads ? cfg->threads : default_threads(),
                .methods = methods,
                .n_methods = n,
                .thread_init = service_thread_init,
                .thread_done = service_thread_done,
                .userdata = svc,
        };
        rpc_server *server = NULL;
        char bound[300];
        mp_error e = {0};
        int r = rpc_server_start(&o, &server, bound, sizeof bound, &e);
        if (r < 0) {
                char msg[2048];
                mp_error_format(&e, msg, sizeof msg);
                log_error("%s", msg);
                return r;
        }

        log_info("listening on %s (%s), %u worker threads", bound,
                 cfg->tls_cert ? (cfg->tls_client_ca ? "TLS, client certificates required" : "TLS")
                               : "plaintext, loopback only",
                 o.threads);
        sd_notifyf(0, "READY=1\nSTATUS=listening on %s", bound);

        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        int sig = 0;
        sigwait(&stop, &sig);

        log_info("%s: stopping", strsignal(sig));
        sd_notify(0, "STOPPING=1");
        long leaked = rpc_server_stop(server);
        if (leaked != 0) {
                log_error("%ld call states left after shutdown", leaked);
                return -EUCLEAN;
        }
        return 0;
}

int main(int argc, char **argv) {
        /* Queries allocate and free tens of MB each (a blast radius of a
         * large family): keep that memory rather than fault it in anew for
         * every query. */
        mp_heap_keep_freed();

        /* Signals are taken by sigwait() in the main thread only; workers
         * inherit the mask. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        collector_config cfg;
        collector_action action;
        mp_error e = {0};
        char msg[2048];
        int r = collector_config_load(argc, argv, &cfg, &action, &e);
        if (r < 0) {
                mp_error_format(&e, msg, sizeof msg);
                fprintf(stderr, "modelprov-collector: %s\n", msg);
                collector_config_done(&cfg);
                return EXIT_USAGE;
        }
        if (action == COLLECTOR_HELP) {
                collector_config_usage();
                collector_config_done(&cfg);
                return EXIT_SUCCESS;
        }
        if (action == COLLECTOR_VERSION) {
                printf("modelprov-collector %s\n", MODELPROV_VERSION);
                collector_config_done(&cfg);
                return EXIT_SUCCESS;
        }
        log_setup("modelprov-collector", cfg.log_level);

        collector_service svc = {
                .store_url = cfg.store,
                .stale_after_s = cfg.stale_after_s,
                .write_lock = PTHREAD_MUTEX_INITIALIZER,
        };
        r = auth_secrets_load(&svc.secrets, cfg.enroll_secret_file, cfg.query_token_file, cfg.admin_token_file, &e);
        if (r >= 0)
                r = prepare_store(cfg.store, &e);
        if (r < 0) {
                mp_error_format(&e, msg, sizeof msg);
                log_error("%s", msg);
        } else
                r = serve(&cfg, &svc);

        auth_secrets_done(&svc.secrets);
        collector_config_done(&cfg);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
