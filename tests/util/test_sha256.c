/*
 * sha256.c against FIPS 180-4 test vectors and against the system's sha256sum, through both the
 * portable code and (where the CPU has them) the SHA extensions.
 */
#include "sbert_util.h"
#include "testutil.h"

#include <string.h>
#include <unistd.h>

static int portable; /* 1: force the portable compression */

static void hash_hex(const void *data, size_t len, char hex[65])
{
    struct sbert_sha256 c;
    uint8_t d[32];
    sbert_sha256_init(&c);
    if (portable) c.accel = 0;
    sbert_sha256_update(&c, data, len);
    sbert_sha256_final(&c, d);
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", d[i]);
}

static void run(void)
{
    char hex[65];
    static const struct {
        const char *in, *want;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        hash_hex(v[i].in, strlen(v[i].in), hex);
        CHECK(!strcmp(hex, v[i].want), "sha256(\"%s\") = %s", v[i].in, hex);
    }
    /* A million 'a' fed in uneven pieces, crossing block boundaries every way. */
    size_t n = 1000000;
    char *a = malloc(n);
    memset(a, 'a', n);
    struct sbert_sha256 c;
    uint8_t d[32];
    sbert_sha256_init(&c);
    if (portable) c.accel = 0;
    for (size_t off = 0, step = 1; off < n; off += step, step = step % 131 + 1)
        sbert_sha256_update(&c, a + off, off + step > n ? n - off : step);
    sbert_sha256_final(&c, d);
    static const uint8_t want[32] = {0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92,
                                     0x81, 0xa1, 0xc7, 0xe2, 0x84, 0xd7, 0x3e, 0x67,
                                     0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97, 0x20, 0x0e,
                                     0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0};
    CHECK(!memcmp(d, want, 32), "sha256 of a million 'a' in pieces");

    /* Lengths around the padding boundary (55, 56, 63, 64, 65 bytes...), against sha256sum. */
    char tmpl[] = "/tmp/sbert-sha-XXXXXX";
    int fd = mkstemp(tmpl);
    CHECK(fd >= 0, "mkstemp");
    close(fd);
    for (size_t len = 0; len < 300; len += (len < 130 ? 1 : 37)) {
        for (size_t i = 0; i < len; i++)
            a[i] = (char)(i * 131 + len);
        FILE *f = fopen(tmpl, "wb");
        fwrite(a, 1, len, f);
        fclose(f);
        char cmd[256], got[80] = "";
        snprintf(cmd, sizeof cmd, "sha256sum %s", tmpl);
        FILE *p = popen(cmd, "r");
        CHECK(p && fgets(got, sizeof got, p), "running sha256sum");
        pclose(p);
        hash_hex(a, len, hex);
        CHECK(!strncmp(got, hex, 64), "length %zu: ours %s, sha256sum %.64s", len, hex, got);
    }
    unlink(tmpl);
    free(a);
}

int main(void)
{
    struct sbert_sha256 c;
    sbert_sha256_init(&c);
    printf("SHA extensions: %s\n", c.accel ? "yes, testing both paths" : "no");
    portable = 1;
    run();
    if (c.accel) {
        portable = 0;
        run();
    }
    char hex[65];
    sbert_sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "hex");
    printf("ok\n");
    return 0;
}
