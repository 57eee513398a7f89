/* zip.c - reads the directory of a zip archive (PyTorch checkpoints).
 *
 * Only the structure is read: the end of central directory record (classic
 * and zip64), the central directory, and each entry's local header, to learn
 * where the entry's bytes start.  Nothing is decompressed.  Every record is
 * checked against the real file size before it is used, and the layout must
 * be unambiguous (see the comments below): a zip that two readers could
 * interpret differently is a way to show a scanner one set of weights and a
 * loader another. */
#include "formats/zip.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"
#include "util/strutil.h"

#define EOCD_SIG        0x06054b50u
#define EOCD_SIZE       22u
#define EOCD64_LOC_SIG  0x07064b50u
#define EOCD64_LOC_SIZE 20u
#define EOCD64_SIG      0x06064b50u
#define EOCD64_SIZE     56u
#define CDH_SIG         0x02014b50u
#define CDH_SIZE        46u
#define LFH_SIG         0x04034b50u
#define LFH_SIZE        30u
#define ZIP64_EXTRA_ID  0x0001u
#define MAX_COMMENT     65535u

static uint16_t rd16(const uint8_t *p) {
        return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t rd32(const uint8_t *p) {
        return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static uint64_t rd64(const uint8_t *p) {
        return (uint64_t) rd32(p) | ((uint64_t) rd32(p + 4) << 32);
}

static int64_t off64(uint64_t v) {
        return v > INT64_MAX ? INT64_MAX : (int64_t) v;
}

/* Entry names go into error messages printed on terminals: control bytes
 * are replaced and long names cut. */
typedef struct safe_name { char s[160]; } safe_name;

static safe_name sname(const char *name) {
        safe_name n;
        mp_printable(n.s, sizeof(n.s), name);
        return n;
}

/* Where the central directory is, from the end records. */
typedef struct zip_dir {
        uint64_t n_entries;
        uint64_t cd_offset, cd_size;
        uint64_t end;           /* the directory must end at or before this */
        int64_t count_field;    /* file offsets of the fields, for errors */
        int64_t offset_field;
} zip_dir;

/* Scans back from the end of the file for the end of central directory
 * record.  Like other readers, the last signature whose comment fits inside
 * the file wins. */
static int find_eocd(const mp_source *src, uint64_t *ret, uint8_t rec[EOCD_SIZE], mp_error *err) {
        uint64_t tail = src->size < EOCD_SIZE + MAX_COMMENT ? src->size : EOCD_SIZE + MAX_COMMENT;
        uint64_t start = src->size - tail;

        _cleanup_(freep) uint8_t *buf = malloc(tail);
        if (!buf)
                return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");
        int r = mp_source_pread(src, buf, tail, start, err);
        if (r < 0)
                return r;

        for (uint64_t i = tail - EOCD_SIZE + 1; i-- > 0;) {
                if (rd32(buf + i) != EOCD_SIG)
                        continue;
                if (i + EOCD_SIZE + rd16(buf + i + 20) > tail)
                        continue;
                memcpy(rec, buf + i, EOCD_SIZE);
                *ret = start + i;
                return 0;
        }
        return mp_error_set(err, -EBADMSG, src->label, off64(start),
                            "not a zip archive: no end of central directory record in the last %" PRIu64 " bytes",
                            tail);
}

/* Reads the zip64 end record through its locator (just before the classic
 * end record).  The zip64 record must end exactly where the locator starts,
 * which is where some readers look for it regardless of the locator. */
static int read_zip64(const mp_source *src, uint64_t loc_off, const uint8_t loc[EOCD64_LOC_SIZE],
                      zip_dir *d, mp_error *err) {
        uint32_t disk = rd32(loc + 4), n_disks = rd32(loc + 16);
        uint64_t off = rd64(loc + 8);
        uint8_t rec[EOCD64_SIZE];

        if (disk != 0 || n_disks > 1)
                return mp_error_set(err, -ENOTSUP, src->label, off64(loc_off + 4),
                                    "multi-disk zip archives are not supported");
        if (off > loc_off || loc_off - off < EOCD64_SIZE)
                return mp_error_set(err, -EBADMSG, src->label, off64(loc_off + 8),
                                    "zip64 end record offset %" PRIu64 " is not before its locator at %" PRIu64,
                                    off, loc_off);
        int r = mp_source_pread(src, rec, sizeof(rec), off, err);
        if (r < 0)
                return r;
        if (rd32(rec) != EOCD64_SIG)
                return mp_error_set(err, -EBADMSG, src->label, off64(off), "bad zip64 end record signature");
        uint64_t rec_size = rd64(rec + 4);
        if (rec_size < EOCD64_SIZE - 12 || rec_size != loc_off - off - 12)
                return mp_error_set(err, -EBADMSG, src->label, off64(off + 4),
                                    "zip64 end record size %" PRIu64 " does not reach its locator", rec_size);
        if (rd32(rec + 16) != 0 || rd32(rec + 20) != 0)
                return mp_error_set(err, -ENOTSUP, src->label, off64(off + 16),
                                    "multi-disk zip archives are not supported");
        if (rd64(rec + 24) != rd64(rec + 32))
                return mp_error_set(err, -ENOTSUP, src->label, off64(off + 24),
                                    "multi-disk zip archives are not supported");

        d->n_entries = rd64(rec + 32);
        d->cd_size = rd64(rec + 40);
        d->cd_offset = rd64(rec + 48);
        d->end = off;
        d->count_field = off64(off + 32);
        d->offset_field = off64(off + 48);
        return 0;
}

static int read_end_records(const mp_source *src, zip_dir *d, mp_error *err) {
        uint8_t rec[EOCD_SIZE] = {0};
        uint64_t eocd = 0;
        int r;

        if (src->size < EOCD_SIZE)
                return mp_error_set(err, -EBADMSG, src->label, 0,
                                    "not a zip archive: %" PRIu64 " bytes is too small", src->size);
        r = find_eocd(src, &eocd, rec, err);
        if (r < 0)
                return r;

        uint16_t disk = rd16(rec + 4), cd_disk = rd16(rec + 6), n_disk = rd16(rec + 8), n_total = rd16(rec + 10);
        uint32_t cd_size = rd32(rec + 12), cd_offset = rd32(rec + 16);
        bool saturated = disk == 0xFFFF || cd_disk == 0xFFFF || n_disk == 0xFFFF || n_total == 0xFFFF ||
                cd_size == UINT32_MAX || cd_offset == UINT32_MAX;

        uint8_t loc[EOCD64_LOC_SIZE];
        bool has_loc = false;
        if (eocd >= EOCD64_LOC_SIZE) {
                r = mp_source_pread(src, loc, sizeof(loc), eocd - EOCD64_LOC_SIZE, err);
                if (r < 0)
                        return r;
                has_loc = rd32(loc) == EOCD64_LOC_SIG;
        }

        if (!has_loc) {
                if (saturated)
                        return mp_error_set(err, -EBADMSG, src->label, off64(eocd),
                                            "end of central directory needs zip64 but there is no zip64 locator");
                if (disk != 0 || cd_disk != 0 || n_disk != n_total)
                        return mp_error_set(err, -ENOTSUP, src->label, off64(eocd + 4),
                                            "multi-disk zip archives are not supported");
                *d = (zip_dir) {
                        .n_entries = n_total, .cd_size = cd_size, .cd_offset = cd_offset, .end = eocd,
                        .count_field = off64(eocd + 10), .offset_field = off64(eocd + 16),
                };
                return 0;
        }

        /* Writers such as torch.save always add zip64 records; when both are
         * present and the classic fields are not saturated they must agree,
         * or two readers would see two different directories. */
        r = read_zip64(src, eocd - EOCD64_LOC_SIZE, loc, d, err);
        if (r < 0)
                return r;
        if ((n_total != 0xFFFF && n_total != d->n_entries) ||
            (cd_size != UINT32_MAX && cd_size != d->cd_size) ||
            (cd_offset != UINT32_MAX && cd_offset != d->cd_offset))
                return mp_error_set(err, -EBADMSG, src->label, off64(eocd + 10),
                                    "zip64 and classic end of central directory records disagree");
        return 0;
}

/* Applies the zip64 extended information extra field: it holds, in this
 * order, only those of the four values whose classic field is saturated. */
static int apply_zip64_extra(const mp_source *src, uint64_t entry_off, const uint8_t *extra, uint16_t len,
                             uint64_t *size, uint64_t *csize, uint64_t *lho, uint32_t *disk, mp_error *err) {
        size_t i = 0;

        while (i + 4 <= len) {
                uint16_t id = rd16(extra + i), sz = rd16(extra + i + 2);
                if (i + 4 + sz > len)
                        return mp_error_set(err, -EBADMSG, src->label, off64(entry_off),
                                            "zip entry extra field %#x overruns the extra data", id);
                if (id == ZIP64_EXTRA_ID) {
                        const uint8_t *p = extra + i + 4;
                        size_t left = sz;
                        uint64_t *fields[] = { size, csize, lho };

                        for (size_t f = 0; f < ELEMENTSOF(fields); f++) {
                                if (*fields[f] != UINT32_MAX)
                                        continue;
                                if (left < 8)
                                        return mp_error_set(err, -EBADMSG, src->label, off64(entry_off),
                                                            "zip64 extra field too short");
                                *fields[f] = rd64(p);
                                p += 8;
                                left -= 8;
                        }
                        if (*disk == 0xFFFF) {
                                if (left < 4)
                                        return mp_error_set(err, -EBADMSG, src->label, off64(entry_off),
                                                            "zip64 extra field too short");
                                *disk = rd32(p);
                        }
                        return 0;
                }
                i += 4 + (size_t) sz;
        }
        return 0;
}

/* Where an entry's record lies in the file, for the overlap check. */
typedef struct span {
        uint64_t start, end;
        size_t index;
} span;

static int span_cmp(const void *a, const void *b) {
        const span *x = a, *y = b;
        return x->start < y->start ? -1 : x->start > y->start;
}

/* Reads the local header of e (at lho) and computes where its data starts.
 * The local extra field length may differ from the central one (torch.save
 * pads there to align data); the name must be the same, as Python's zipfile
 * also insists. */
static int read_local_header(const mp_source *src, uint64_t lho, uint16_t method, mp_zip_entry *e,
                             size_t name_len, uint8_t *scratch, mp_error *err) {
        /* header and name in one read: scratch holds 30 + 65535 bytes */
        const uint8_t *h = scratch;
        int r = mp_source_pread(src, scratch, LFH_SIZE + name_len, lho, err);
        if (r < 0)
                return r;
        if (rd32(h) != LFH_SIG)
                return mp_error_set(err, -EBADMSG, src->label, off64(lho),
                                    "zip entry '%s': bad local header signature", sname(e->name).s);
        if (rd16(h + 8) != method)
                return mp_error_set(err, -EBADMSG, src->label, off64(lho + 8),
                                    "zip entry '%s': local header method %u differs from the central directory's %u",
                                    sname(e->name).s, rd16(h + 8), method);
        if (rd16(h + 26) != name_len || memcmp(h + LFH_SIZE, e->name, name_len) != 0)
                return mp_error_set(err, -EBADMSG, src->label, off64(lho + LFH_SIZE),
                                    "zip entry '%s': local header name differs from the central directory",
                                    sname(e->name).s);

        e->data_offset = lho + LFH_SIZE + name_len + rd16(h + 28);
        return 0;
}

/* The central directory is read through a window, not record by record:
 * one read covers many entries. */
#define CD_WINDOW (256u << 10)  /* > one entry: 46 + 3 * 65535 bytes */

typedef struct cd_window {
        uint8_t *buf;
        uint64_t start;
        size_t len;
} cd_window;

/* Points *ret at [at, at + n), which the caller checked is inside the
 * directory ending at end. */
static int cd_get(const mp_source *src, cd_window *w, uint64_t at, size_t n, uint64_t end, const uint8_t **ret,
                  mp_error *err) {
        assert(n <= CD_WINDOW && at + n <= end);

        if (at < w->start || at + n > w->start + w->len) {
                size_t len = end - at < CD_WINDOW ? (size_t) (end - at) : CD_WINDOW;
                int r = mp_source_pread(src, w->buf, len, at, err);
                if (r < 0)
                        return r;
                w->start = at;
                w->len = len;
        }
        *ret = w->buf + (at - w->start);
        return 0;
}

/* Parses the central directory entry at *pos (inside [.., cd_end)), then its
 * local header; advances *pos. */
static int read_entry(const mp_source *src, const zip_dir *d, cd_window *w, uint64_t *pos, mp_zip_entry *e,
                      span *sp, uint8_t *scratch, mp_error *err) {
        uint64_t at = *pos, cd_end = d->cd_offset + d->cd_size;
        const uint8_t *h = NULL;
        int r;

        if (cd_end - at < CDH_SIZE)
                return mp_error_set(err, -EBADMSG, src->label, off64(at), "central directory entry truncated");
        r = cd_get(src, w, at, CDH_SIZE, cd_end, &h, err);
        if (r < 0)
                return r;
        if (rd32(h) != CDH_SIG)
                return mp_error_set(err, -EBADMSG, src->label, off64(at), "bad central directory entry signature");

        uint16_t flags = rd16(h + 8), method = rd16(h + 10);
        uint16_t name_len = rd16(h + 28), extra_len = rd16(h + 30), comment_len = rd16(h + 32);
        uint32_t disk = rd16(h + 34);
        uint64_t csize = rd32(h + 20), size = rd32(h + 24), lho = rd32(h + 42);
        uint64_t var = (uint64_t) name_len + extra_len + comment_len;

        if (cd_end - at - CDH_SIZE < var)
                return mp_error_set(err, -EBADMSG, src->label, off64(at),
                                    "central directory entry runs past the end of the directory");
        if (name_len == 0)
                return mp_error_set(err, -EBADMSG, src->label, off64(at + 28), "zip entry with an empty name");

        /* the whole record, now that its length is known */
        r = cd_get(src, w, at, CDH_SIZE + (size_t) name_len + extra_len, cd_end, &h, err);
        if (r < 0)
                return r;
        const uint8_t *name = h + CDH_SIZE, *extra = name + name_len;
        if (memchr(name, 0, name_len))
                return mp_error_set(err, -EBADMSG, src->label, off64(at + CDH_SIZE),
                                    "zip entry name contains a NUL byte");
        e->name = strndup((const char *) name, name_len);
        if (!e->name)
                return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");

        r = apply_zip64_extra(src, at, extra, extra_len, &size, &csize, &lho, &disk, err);
        if (r < 0)
                return r;
        if (flags & 0x0041)
                return mp_error_set(err, -ENOTSUP, src->label, off64(at + 8),
                                    "zip entry '%s' is encrypted", sname(e->name).s);
        if (disk != 0)
                return mp_error_set(err, -ENOTSUP, src->label, off64(at + 34),
                                    "zip entry '%s' is on another disk", sname(e->name).s);
        if (method == 0 && csize != size)
                return mp_error_set(err, -EBADMSG, src->label, off64(at + 20),
                                    "stored zip entry '%s': compressed size %" PRIu64 " differs from size %" PRIu64,
                                    sname(e->name).s, csize, size);
        if (lho > d->cd_offset || d->cd_offset - lho < LFH_SIZE)
                return mp_error_set(err, -EBADMSG, src->label, off64(at + 42),
                                    "zip entry '%s': local header offset %" PRIu64 " is not before the central directory",
                                    sname(e->name).s, lho);

        e->method = method;
        e->crc32 = rd32(h + 16);
        e->comp_size = csize;
        e->size = size;
        r = read_local_header(src, lho, method, e, name_len, scratch, err);
        if (r < 0)
                return r;

        /* An entry's data must lie between its header and the central
         * directory: that also keeps it inside the file. */
        uint64_t end;
        if (add_overflow_u64(e->data_offset, csize, &end) || end > d->cd_offset)
                return mp_error_set(err, -EBADMSG, src->label, off64(at + 20),
                                    "zip entry '%s': data [%" PRIu64 ", +%" PRIu64 ") runs past the central directory at %" PRIu64,
                                    sname(e->name).s, e->data_offset, csize, d->cd_offset);

        *sp = (span) { .start = lho, .end = end };
        *pos = at + CDH_SIZE + var;
        return 0;
}

/* Entries must not share bytes: overlapping records are how zip bombs and
 * "one file, two contents" tricks are built. */
static int check_overlaps(const mp_source *src, const mp_zip *z, span *spans, mp_error *err) {
        if (z->n_entries < 2)
                return 0;
        for (size_t i = 0; i < z->n_entries; i++)
                spans[i].index = i;
        qsort(spans, z->n_entries, sizeof(span), span_cmp);
        for (size_t i = 1; i < z->n_entries; i++)
                if (spans[i].start < spans[i - 1].end)
                        return mp_error_set(err, -EBADMSG, src->label, off64(spans[i].start),
                                            "zip entry '%s' overlaps entry '%s'",
                                            sname(z->entries[spans[i].index].name).s,
                                            sname(z->entries[spans[i - 1].index].name).s);
        return 0;
}

int mp_zip_open(const mp_source *src, mp_zip *ret, mp_error *err) {
        assert(src);
        assert(ret);

        *ret = (mp_zip) {0};
        zip_dir d = {0};
        int r = read_end_records(src, &d, err);
        if (r < 0)
                return r;

        uint64_t cd_end;
        if (add_overflow_u64(d.cd_offset, d.cd_size, &cd_end) || cd_end > d.end)
                return mp_error_set(err, -EBADMSG, src->label, d.offset_field,
                                    "central directory [%" PRIu64 ", +%" PRIu64 ") is not before the end record at %" PRIu64,
                                    d.cd_offset, d.cd_size, d.end);
        if (d.n_entries > MP_ZIP_MAX_ENTRIES)
                return mp_error_set(err, -E2BIG, src->label, d.count_field,
                                    "%" PRIu64 " zip entries (limit %u)", d.n_entries, MP_ZIP_MAX_ENTRIES);
        if (d.n_entries * CDH_SIZE > d.cd_size)
                return mp_error_set(err, -EBADMSG, src->label, d.count_field,
                                    "%" PRIu64 " zip entries cannot fit in a central directory of %" PRIu64 " bytes",
                                    d.n_entries, d.cd_size);

        mp_zip z = {0};
        _cleanup_(freep) span *spans = NULL;
        _cleanup_(freep) uint8_t *scratch = malloc(LFH_SIZE + 65536);
        _cleanup_(freep) uint8_t *window = malloc(CD_WINDOW);
        cd_window w = { .buf = window };
        if (d.n_entries > 0) {
                z.entries = calloc(d.n_entries, sizeof(mp_zip_entry));
                spans = calloc(d.n_entries, sizeof(span));
        }
        if (!scratch || !window || (d.n_entries > 0 && (!z.entries || !spans))) {
                free(z.entries);
                return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");
        }

        uint64_t pos = d.cd_offset;
        for (; z.n_entries < d.n_entries; z.n_entries++) {
                r = read_entry(src, &d, &w, &pos, &z.entries[z.n_entries], &spans[z.n_entries], scratch, err);
                if (r < 0) {
                        z.n_entries++;  /* free the name it may have set */
                        goto fail;
                }
        }
        /* The count and the directory size must describe the same entries:
         * readers that walk the bytes and readers that trust the count must
         * see the same archive. */
        if (pos != cd_end) {
                r = mp_error_set(err, -EBADMSG, src->label, off64(pos),
                                 "central directory has %" PRIu64 " bytes after its %" PRIu64 " declared entries",
                                 cd_end - pos, d.n_entries);
                goto fail;
        }
        r = check_overlaps(src, &z, spans, err);
        if (r < 0)
                goto fail;

        *ret = z;
        return 0;

fail:
        mp_zip_free(&z);
        return r;
}

void mp_zip_free(mp_zip *z) {
        if (!z)
                return;
        for (size_t i = 0; i < z->n_entries; i++)
                free(z->entries[i].name);
        free(z->entries);
        *z = (mp_zip) {0};
}

const mp_zip_entry *mp_zip_find(const mp_zip *z, const char *name) {
        assert(z);
        assert(name);

        /* The first entry of a name wins; mp_torch_load reports duplicates. */
        for (size_t i = 0; i < z->n_entries; i++)
                if (strcmp(z->entries[i].name, name) == 0)
                        return &z->entries[i];
        return NULL;
}
