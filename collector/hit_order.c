/* hit_order.c - sorting blast-radius hits (see hit_order.h). */
#include "collector/hit_order.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"

/* Sorting the hits with string compares of hostnames and host ids took a
 * quarter of a blast radius: instead each hit gets the rank of its host
 * among the hits' hosts (hostname, then id), and the sort compares
 * numbers, strings only for two rows of one host at the same score. */
typedef struct hit_key {
        double score;
        uint32_t host;                  /* the host's rank */
        uint32_t index;                 /* into the hits: the last tie-break */
        bool exact;
} hit_key;

static int host_rank_order(const void *a, const void *b, void *userdata) {
        const mp_blast_hit *h = userdata;
        const mp_blast_hit *x = &h[*(const uint32_t *) a], *y = &h[*(const uint32_t *) b];
        int c = strcmp(x->loc.hostname, y->loc.hostname);
        return c ? c : strcmp(x->loc.host_id, y->loc.host_id);
}

static int hit_key_order(const void *a, const void *b, void *userdata) {
        const mp_blast_hit *h = userdata;
        const hit_key *x = a, *y = b;
        if (x->exact != y->exact)
                return x->exact ? -1 : 1;
        if (x->score != y->score)
                return x->score > y->score ? -1 : 1;
        if (x->host != y->host)
                return x->host < y->host ? -1 : 1;
        int c = strcmp(h[x->index].loc.path, h[y->index].loc.path);
        if (c == 0)
                c = h[x->index].loc.first_seen < h[y->index].loc.first_seen ? -1
                                                                           : h[x->index].loc.first_seen >
                                                                                     h[y->index].loc.first_seen;
        if (c == 0)
                c = x->index < y->index ? -1 : x->index > y->index;
        return c;
}

static uint64_t host_id_hash(const char *id) {
        uint64_t x = 0xcbf29ce484222325ULL;     /* FNV-1a */
        for (; *id; id++)
                x = (x ^ (uint8_t) *id) * 0x100000001b3ULL;
        return x;
}

/* Each hit's host rank into rank_of[] (n entries): the hosts found through
 * an open-addressing table of host ids, then sorted. */
static int host_ranks(const mp_blast_hit *h, size_t n, uint32_t *rank_of) {
        size_t size = 1;
        while (size < 2 * n)
                size <<= 1;
        _cleanup_(freep) uint32_t *table = calloc(size, sizeof(*table));       /* host + 1, 0: empty */
        _cleanup_(freep) uint32_t *hosts = malloc(n * sizeof(*hosts));         /* a hit of each host */
        _cleanup_(freep) uint32_t *rank = malloc(n * sizeof(*rank));           /* per host */
        if (!table || !hosts || !rank)
                return -ENOMEM;
        size_t n_hosts = 0;
        for (size_t i = 0; i < n; i++) {
                size_t at = host_id_hash(h[i].loc.host_id) & (size - 1);
                while (table[at] && strcmp(h[hosts[table[at] - 1]].loc.host_id, h[i].loc.host_id) != 0)
                        at = (at + 1) & (size - 1);
                if (!table[at]) {
                        hosts[n_hosts] = (uint32_t) i;
                        table[at] = (uint32_t) ++n_hosts;
                }
                rank_of[i] = table[at] - 1;     /* the host, for now */
        }
        /* hosts[] sorted becomes the ranking: rank[host] = its position. */
        _cleanup_(freep) uint32_t *order = malloc(n_hosts * sizeof(*order));
        if (!order)
                return -ENOMEM;
        for (size_t k = 0; k < n_hosts; k++)
                order[k] = hosts[k];
        qsort_r(order, n_hosts, sizeof(*order), host_rank_order, (void *) h);
        for (size_t k = 0; k < n_hosts; k++) {
                size_t at = host_id_hash(h[order[k]].loc.host_id) & (size - 1);
                while (strcmp(h[hosts[table[at] - 1]].loc.host_id, h[order[k]].loc.host_id) != 0)
                        at = (at + 1) & (size - 1);
                rank[table[at] - 1] = (uint32_t) k;
        }
        for (size_t i = 0; i < n; i++)
                rank_of[i] = rank[rank_of[i]];
        return 0;
}

typedef struct sort_part {
        hit_key *keys;
        size_t n;
        const mp_blast_hit *h;
        pthread_t thread;
        bool started;
} sort_part;

static void *sort_part_run(void *userdata) {
        sort_part *p = userdata;
        qsort_r(p->keys, p->n, sizeof(*p->keys), hit_key_order, (void *) p->h);
        return NULL;
}

/* Merges the sorted runs a and b into out. */
static void merge_runs(const hit_key *a, size_t na, const hit_key *b, size_t nb, hit_key *out,
                       const mp_blast_hit *h) {
        size_t i = 0, j = 0, o = 0;
        while (i < na && j < nb)
                out[o++] = hit_key_order(&b[j], &a[i], (void *) h) < 0 ? b[j++] : a[i++];
        memcpy(out + o, a + i, (na - i) * sizeof(*out));
        memcpy(out + o + (na - i), b + j, (nb - j) * sizeof(*out));
}

/* Sorts keys: n_threads parts sorted at once (the caller's thread sorts
 * one; a part whose thread does not start is sorted there too), then
 * merged pairwise.  The order is total (index breaks ties), so the result
 * is the one sort's. */
static int sort_keys(hit_key *keys, size_t n, unsigned n_threads, size_t min_per_thread, const mp_blast_hit *h) {
        size_t useful = n / min_per_thread;
        unsigned parts = useful < n_threads ? (unsigned) useful : n_threads;
        if (parts <= 1) {
                qsort_r(keys, n, sizeof(*keys), hit_key_order, (void *) h);
                return 0;
        }
        _cleanup_(freep) sort_part *p = calloc(parts, sizeof(*p));
        _cleanup_(freep) hit_key *tmp = malloc(n * sizeof(*tmp));
        if (!p || !tmp)
                return -ENOMEM;
        for (unsigned k = 0; k < parts; k++) {
                size_t first = n * k / parts, last = n * (k + 1) / parts;
                p[k] = (sort_part) { .keys = keys + first, .n = last - first, .h = h };
                if (k > 0)
                        p[k].started = pthread_create(&p[k].thread, NULL, sort_part_run, &p[k]) == 0;
        }
        for (unsigned k = 0; k < parts; k++)
                if (!p[k].started)
                        sort_part_run(&p[k]);
        for (unsigned k = 1; k < parts; k++)
                if (p[k].started)
                        pthread_join(p[k].thread, NULL);

        /* Pairwise rounds, each merging neighbouring runs into the other buffer. */
        hit_key *from = keys, *to = tmp;
        for (unsigned width = 1; width < parts; width *= 2) {
                for (unsigned k = 0; k < parts; k += 2 * width) {
                        size_t a = n * k / parts;
                        size_t b = k + width < parts ? n * (k + width) / parts : n;
                        size_t end = k + 2 * width < parts ? n * (k + 2 * width) / parts : n;
                        merge_runs(from + a, b - a, from + b, end - b, to + a, h);
                }
                hit_key *swap = from;
                from = to;
                to = swap;
        }
        if (from != keys)
                memcpy(keys, from, n * sizeof(*keys));
        return 0;
}

int mp_blast_hits_sort(mp_blast_hit **h, size_t n, unsigned n_threads, size_t min_per_thread) {
        assert(h);
        if (n < 2)
                return 0;
        if (n > UINT32_MAX)
                return -ENOMEM;
        _cleanup_(freep) uint32_t *rank_of = malloc(n * sizeof(*rank_of));
        _cleanup_(freep) hit_key *keys = malloc(n * sizeof(*keys));
        _cleanup_(freep) mp_blast_hit *sorted = malloc(n * sizeof(*sorted));
        if (!rank_of || !keys || !sorted || host_ranks(*h, n, rank_of) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                keys[i] = (hit_key) { .score = (*h)[i].score, .host = rank_of[i], .index = (uint32_t) i,
                                      .exact = strcmp((*h)[i].relation, MP_BLAST_EXACT_COPY) == 0 };
        if (sort_keys(keys, n, n_threads ? n_threads : 1, min_per_thread ? min_per_thread : MP_HIT_ORDER_PER_THREAD,
                      *h) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                sorted[i] = (*h)[keys[i].index];
        free(*h);
        *h = TAKE_PTR(sorted);
        return 0;
}
