/* report_graph.h - the lineage graph of a report: base models (catalog
 * entries, families) -> models (edges labelled with relation and score) ->
 * hosts, laid out left to right by Graphviz's dot (libgvc) and rendered to
 * SVG in memory.
 *
 * Node names are generated here ("g3", "m17", "h2"); every text from agents
 * reaches Graphviz only as a plain (never HTML-like) label, escaped for
 * Graphviz's label syntax, and Graphviz escapes it again for XML.  In an
 * incident report the queried model and its blast radius carry the SVG
 * classes "target" and "hit" (and red strokes). */
#pragma once

#include "report_model.h"

/* Largest label text taken from agents, in bytes of UTF-8; longer text is
 * cut on a character boundary and ends in "..." (the tables show it
 * whole). */
#define REPORT_GRAPH_LABEL_MAX 64

/* *ret: the SVG element, starting at "<svg" (no XML prolog, DOCTYPE or
 * comments before it), ready to inline in HTML; free() it.  Prints errors;
 * returns a negative errno (-EBADMSG if the SVG held markup it must not). */
int report_graph_svg(const report *r, char **ret);
