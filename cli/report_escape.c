/* report_escape.c - escaping of agents' text for HTML and Markdown
 * (report_write.h), and the note every format ends with. */
#include <string.h>

#include "report_write.h"
#include "util/macro.h"
#include "util/strutil.h"

const char report_grouping_note[] =
        "Base models: a model that an agent matched against the fleet's reference catalog (a SCAN_MATCH "
        "event) is shown under that catalog entry, with the relation, verdict and score of its best match; "
        "a model without a catalog match is grouped with the models of the same family (its fingerprint's "
        "family hash: architecture shape and tokenizer family), and one with no stored fingerprint under "
        "\"unknown family\". Only models present now are counted; findings are every FINDING event the "
        "collector holds, marked when their path holds no model in the inventory.";

/* The text as valid UTF-8 (the agents' paths are bytes). */
static char *utf8_of(const char *s) {
        s = s ? s : "";
        /* A byte grows to at most four characters ("\xNN"): never cut. */
        return mp_utf8_sanitize(s, 4 * strlen(s) + 16);
}

size_t report_bidi_control_at(const char *s) {
        const unsigned char *p = (const unsigned char *) s;
        /* U+202A..U+202E (embeddings, overrides), U+2066..U+2069 (isolates). */
        if (p[0] == 0xe2 && p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae)
                return 3;
        if (p[0] == 0xe2 && p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9)
                return 3;
        return 0;
}

/* Writes s as valid UTF-8, bidi controls replaced by U+FFFD (they could
 * reorder what a reader sees), every other byte through put. */
static void put_text(FILE *f, const char *s, void (*put)(FILE *f, unsigned char c)) {
        _cleanup_(freep) char *u = utf8_of(s);
        if (!u) {
                fputs("(out of memory)", f);
                return;
        }
        for (const unsigned char *p = (const unsigned char *) u; *p; p++) {
                size_t bidi = report_bidi_control_at((const char *) p);
                if (bidi > 0) {
                        fputs("\xef\xbf\xbd", f);
                        p += bidi - 1;
                } else
                        put(f, *p);
        }
}

static void put_html_byte(FILE *f, unsigned char c) {
        switch (c) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
                if (c < 0x20 || c == 0x7f)
                        fputs("\xef\xbf\xbd", f);
                else
                        fputc(c, f);
        }
}

static void put_markdown_byte(FILE *f, unsigned char c) {
        if (c < 0x20 || c == 0x7f)
                fputc(' ', f);
        else if (strchr("\\`*_{}[]()<>#!|~&", c)) {
                /* '&' too: no entity reference either. */
                fputc('\\', f);
                fputc(c, f);
        } else
                fputc(c, f);
}

void report_put_html(FILE *f, const char *s) {
        put_text(f, s, put_html_byte);
}

void report_put_markdown(FILE *f, const char *s) {
        put_text(f, s, put_markdown_byte);
}
