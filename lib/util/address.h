/* address.h - gRPC listen/target addresses ("HOST:PORT", "[V6]:PORT",
 * "unix:PATH"): splitting them and telling whether they stay on this host.
 *
 * Plaintext gRPC is allowed only where nobody else can listen in, so both the
 * collector (--insecure-loopback) and its clients ask mp_address_is_loopback()
 * before they agree to run without TLS. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Splits "HOST:PORT" or "[V6]:PORT" into host (without brackets) and port.
 * -EINVAL when there is no port, the port is not 0..65535, or the host is
 * empty or longer than host_size - 1. */
int mp_address_split(const char *addr, char *host, size_t host_size, unsigned *port);

/* True for "unix:" sockets, "localhost", 127.0.0.0/8 and ::1, with an
 * optional "dns:///", "ipv4:" or "ipv6:" scheme prefix; false for anything
 * else, including names that may resolve to loopback and malformed input. */
bool mp_address_is_loopback(const char *addr);
