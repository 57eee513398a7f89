/* address.c - gRPC address parsing and the loopback test (see address.h). */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/address.h"
#include "util/strutil.h"

int mp_address_split(const char *addr, char *host, size_t host_size, unsigned *port) {
        assert(addr);
        assert(host);
        assert(port);

        const char *h = addr, *colon;
        size_t hn;
        if (*addr == '[') {
                const char *close = strchr(addr, ']');
                if (!close || close[1] != ':')
                        return -EINVAL;
                h = addr + 1;
                hn = (size_t) (close - h);
                colon = close + 1;
        } else {
                colon = strrchr(addr, ':');
                if (!colon || memchr(addr, ':', (size_t) (colon - addr)))
                        return -EINVAL;         /* a bare IPv6 address needs brackets */
                hn = (size_t) (colon - addr);
        }
        if (hn == 0 || hn >= host_size)
                return -EINVAL;

        const char *p = colon + 1;
        if (*p < '0' || *p > '9')
                return -EINVAL;
        char *end;
        errno = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (errno != 0 || *end != '\0' || v > 65535)
                return -EINVAL;

        memcpy(host, h, hn);
        host[hn] = '\0';
        *port = (unsigned) v;
        return 0;
}

bool mp_address_is_loopback(const char *addr) {
        assert(addr);

        if (mp_has_prefix(addr, "unix:"))
                return true;
        static const char *const schemes[] = {"dns:///", "ipv4:", "ipv6:"};
        for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
                if (mp_has_prefix(addr, schemes[i])) {
                        addr += strlen(schemes[i]);
                        break;
                }

        char host[256];
        unsigned port;
        if (mp_address_split(addr, host, sizeof host, &port) < 0)
                return false;
        if (strcmp(host, "localhost") == 0)
                return true;

        struct in_addr a4;
        if (inet_pton(AF_INET, host, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) == 1)
                return IN6_IS_ADDR_LOOPBACK(&a6);
        return false;
}
