/*
 * auth.c — the two checks on who may talk to the server: the bearer token, and the Host header of
 * a loopback-only server (DNS rebinding).
 */
#include "route.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>
#include <string.h>

int http_bearer_ok(const char *header, const char *token, size_t token_len)
{
    if (!header || strncasecmp(header, "Bearer ", 7) != 0) return 0;
    const char *given = header + 7;
    while (*given == ' ')
        given++;
    size_t n = strlen(given);
    while (n > 0 && (given[n - 1] == ' ' || given[n - 1] == '\t'))
        n--;
    /* Every byte of the given token is compared, whatever the first difference: the time depends
     * on the length the client sent, never on the secret's content. */
    unsigned char diff = n != token_len;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)given[i] ^ (unsigned char)(token_len ? token[i % token_len] : 0);
    return token_len > 0 && diff == 0;
}

int http_host_is_loopback(const char *host)
{
    if (!host) return 0;
    char h[256];
    size_t n = strlen(host);
    if (n == 0 || n >= sizeof h) return 0;
    memcpy(h, host, n + 1);
    if (h[0] == '[') {
        char *close = strchr(h, ']');
        if (!close || (close[1] != '\0' && close[1] != ':')) return 0;
        *close = '\0';
        struct in6_addr a6;
        return inet_pton(AF_INET6, h + 1, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    char *colon = strchr(h, ':');
    if (colon) *colon = '\0';
    if (strcasecmp(h, "localhost") == 0) return 1;
    struct in_addr a4;
    return inet_pton(AF_INET, h, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}
