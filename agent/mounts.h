/* mounts.h - noticing mounts and unmounts, for the watcher.
 *
 * A file system mounted on top of a watched directory is invisible to the
 * watches already there (they stay on the covered directory), and inotify
 * says nothing about it.  The kernel does signal every change of the mount
 * table: /proc/self/mountinfo becomes readable with EPOLLPRI.  This module
 * keeps the list of mount points, and on each such signal tells its owner
 * which mount points appeared or went away, so the watcher can rescan the
 * roots they touch.  Unrelated mounts (containers come and go on GPU hosts)
 * cost one read of mountinfo and a sorted comparison, nothing more. */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

typedef struct agent_mounts agent_mounts;

/* Called on the loop thread for each mount point added or removed. */
typedef void (*agent_mount_fn)(void *userdata, const char *mount_point, bool added);

/* Reads the current mount table and watches it on e.  -errno when
 * /proc/self/mountinfo cannot be read (then the owner relies on its
 * periodic rescan). */
int agent_mounts_new(sd_event *e, agent_mount_fn cb, void *userdata, agent_mounts **ret);
void agent_mounts_free(agent_mounts *m);
