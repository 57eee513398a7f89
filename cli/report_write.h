/* report_write.h - a gathered report (report_model.h) written as one
 * self-contained HTML page (inline CSS and SVG, no script, a strict
 * Content-Security-Policy), as Markdown for tickets, or as CSV rows; and the
 * escaping each format needs for the untrusted text from agents. */
#pragma once

#include <stdio.h>

#include "report_model.h"

typedef enum report_format { REPORT_HTML, REPORT_MARKDOWN, REPORT_CSV } report_format;

/* Each writes the whole report to f; 0, or a negative errno after printing
 * why (the caller checks f's errors when it closes it). */
int report_write_html(const report *r, FILE *f);
int report_write_markdown(const report *r, FILE *f);
int report_write_csv(const report *r, FILE *f);

/* The length of the bidirectional embedding, override or isolate control
 * at s (U+202A..U+202E, U+2066..U+2069), 0 if there is none: a file name
 * with one could show reordered text ("gpj.exe"), so every format replaces
 * them by U+FFFD. */
size_t report_bidi_control_at(const char *s);

/* s as HTML text or attribute value: & < > " ' as references, control
 * characters and bidi controls as U+FFFD, bytes that are not UTF-8 as
 * "\xNN". */
void report_put_html(FILE *f, const char *s);

/* s for a Markdown table cell or line: every ASCII punctuation character
 * that Markdown or the HTML inside Markdown gives a meaning is
 * backslash-escaped ('<' too, so no tag survives), line breaks and other
 * control characters become spaces, bidi controls U+FFFD, bytes that are
 * not UTF-8 "\xNN". */
void report_put_markdown(FILE *f, const char *s);

/* The footer's account of how models are grouped (docs/reports.md). */
extern const char report_grouping_note[];
