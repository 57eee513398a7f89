/* commands.h - the subcommands; each takes argc/argv with argv[0] = its name
 * and returns an exit code (see output.h). */
#pragma once

int cmd_inspect(int argc, char **argv);
int cmd_fingerprint(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_catalog(int argc, char **argv);
int cmd_scan(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_status(int argc, char **argv);
