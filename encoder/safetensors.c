#include "safetensors.h"

#include "internal.h"
#include "sbert_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { DT_F32, DT_F16, DT_BF16, DT_OTHER };

struct tensor {
    char *name;
    int dtype; /* DT_* */
    char dtype_name[16];
    int ndim;
    int64_t shape[SBERT_ST_MAX_DIMS];
    uint64_t begin, end; /* absolute file offsets, validated: begin <= end <= file size */
};

struct sbert_st_file {
    char *path;
    const uint8_t *map;
    size_t size;
    struct tensor *t;
    size_t nt;
    void **owned; /* converted buffers */
    size_t nowned;
};

/* Element sizes of the dtypes safetensors defines; 0 for a name it does not define. */
static size_t dtype_size(const char *s, int *dt)
{
    static const struct {
        const char *name;
        size_t size;
        int dt;
    } tab[] = {
        {"F32", 4, DT_F32},    {"F16", 2, DT_F16},       {"BF16", 2, DT_BF16},
        {"F64", 8, DT_OTHER},  {"I64", 8, DT_OTHER},     {"I32", 4, DT_OTHER},
        {"I16", 2, DT_OTHER},  {"I8", 1, DT_OTHER},      {"U64", 8, DT_OTHER},
        {"U32", 4, DT_OTHER},  {"U16", 2, DT_OTHER},     {"U8", 1, DT_OTHER},
        {"BOOL", 1, DT_OTHER}, {"F8_E4M3", 1, DT_OTHER}, {"F8_E5M2", 1, DT_OTHER},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(s, tab[i].name)) {
            *dt = tab[i].dt;
            return tab[i].size;
        }
    return 0;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_u64(const cJSON *j, uint64_t *v)
{
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return -1;
    *v = (uint64_t)d;
    return 0;
}

static int parse_header(sbert_st_file *f, const char *json, size_t len, uint64_t data_start,
                        char *errbuf, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    int object = 0;
    if (!root && sbert_util_json_valid(json, len, &object) && object)
        return sbert_util_errf(errbuf, errlen, SBERT_ENOMEM, "%s: out of memory parsing the header",
                               f->path);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return sbert_util_errf(errbuf, errlen, SBERT_EFORMAT, "%s: header is not a JSON object",
                               f->path);
    }
    int rc = 0;
    size_t n = (size_t)cJSON_GetArraySize(root);
    f->t = calloc(n ? n : 1, sizeof *f->t);
    if (!f->t) {
        cJSON_Delete(root);
        return SBERT_ENOMEM;
    }
    uint64_t data_size = f->size - data_start;
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        if (!strcmp(e->string, "__metadata__")) continue;
        struct tensor *t = &f->t[f->nt];
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) ||
            !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2) {
            rc = sbert_util_errf(errbuf, errlen, SBERT_EFORMAT,
                                 "%s: tensor \"%s\" lacks dtype, shape or data_offsets", f->path,
                                 e->string);
            break;
        }
        size_t esize = dtype_size(dt->valuestring, &t->dtype);
        if (!esize) {
            rc = sbert_util_errf(errbuf, errlen, SBERT_EFORMAT,
                                 "%s: tensor \"%s\" has unknown dtype \"%.15s\"", f->path,
                                 e->string, dt->valuestring);
            break;
        }
        snprintf(t->dtype_name, sizeof t->dtype_name, "%s", dt->valuestring);
        int nd = cJSON_GetArraySize(sh);
        if (nd > SBERT_ST_MAX_DIMS) {
            rc = sbert_util_errf(errbuf, errlen, SBERT_EFORMAT,
                                 "%s: tensor \"%s\" has %d dimensions", f->path, e->string, nd);
            break;
        }
        /* The element count, checked for overflow against what the file could hold. */
        uint64_t count = 1;
        int bad = 0;
        for (int i = 0; i < nd; i++) {
            uint64_t d;
            if (json_u64(cJSON_GetArrayItem(sh, i), &d)) {
                bad = 1;
                break;
            }
            t->shape[i] = (int64_t)d;
            if (d && count > f->size / d) bad = 2;
            count *= d;
        }
        t->ndim = nd;
        uint64_t b, en;
        if (bad == 1 || json_u64(cJSON_GetArrayItem(off, 0), &b) ||
            json_u64(cJSON_GetArrayItem(off, 1), &en)) {
            rc = sbert_util_errf(
                errbuf, errlen, SBERT_EFORMAT,
                "%s: tensor \"%s\" has a shape or offset that is not a non-negative integer",
                f->path, e->string);
            break;
        }
        if (b > en || en > data_size) {
            rc = sbert_util_errf(
                errbuf, errlen, SBERT_EFORMAT,
                "%s: tensor \"%s\" data_offsets [%llu, %llu] lie outside the %llu data bytes "
                "(file truncated?)",
                f->path, e->string, (unsigned long long)b, (unsigned long long)en,
                (unsigned long long)data_size);
            break;
        }
        if (bad == 2 || count * esize != en - b) {
            rc = sbert_util_errf(
                errbuf, errlen, SBERT_EFORMAT,
                "%s: tensor \"%s\" occupies %llu bytes, its shape and dtype need another size",
                f->path, e->string, (unsigned long long)(en - b));
            break;
        }
        t->begin = data_start + b;
        t->end = data_start + en;
        t->name = strdup(e->string);
        if (!t->name) {
            rc = SBERT_ENOMEM;
            break;
        }
        f->nt++;
    }
    cJSON_Delete(root);
    return rc;
}

int sbert_st_open(const char *path, sbert_st_file **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    sbert_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return SBERT_ENOMEM;
    }
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = sbert_util_errf(errbuf, errlen, SBERT_EIO, "%s: cannot open: %s", path,
                             strerror(errno));
        goto out;
    }
    if (st.st_size < 8) {
        rc = sbert_util_errf(errbuf, errlen, SBERT_EFORMAT,
                             "%s: %lld bytes, too short for a safetensors header", path,
                             (long long)st.st_size);
        goto out;
    }
    f->size = (size_t)st.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        rc =
            sbert_util_errf(errbuf, errlen, SBERT_EIO, "%s: cannot map: %s", path, strerror(errno));
        goto out;
    }
    f->map = m;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | f->map[i];
    if (hlen > f->size - 8) {
        rc = sbert_util_errf(
            errbuf, errlen, SBERT_EFORMAT,
            "%s: header length %llu exceeds the file's %zu bytes (truncated or not safetensors)",
            path, (unsigned long long)hlen, f->size);
        goto out;
    }
    rc = parse_header(f, (const char *)f->map + 8, (size_t)hlen, 8 + hlen, errbuf, errlen);
out:
    if (fd >= 0) close(fd);
    if (rc) {
        sbert_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void sbert_st_close(sbert_st_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->nt; i++)
        free(f->t[i].name);
    free(f->t);
    for (size_t i = 0; i < f->nowned; i++)
        free(f->owned[i]);
    free(f->owned);
    if (f->map) munmap((void *)f->map, f->size);
    free(f->path);
    free(f);
}

const void *sbert_st_bytes(const sbert_st_file *f, size_t *size)
{
    *size = f->size;
    return f->map;
}

static const struct tensor *find(const sbert_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->nt; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    for (size_t i = 0; i < f->nt; i++)
        if (!strncmp(f->t[i].name, "bert.", 5) && !strcmp(f->t[i].name + 5, name)) return &f->t[i];
    return NULL;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 1024)) {
                man <<= 1;
                exp--;
            }
            bits = sign | exp << 23 | (man & 1023) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

static void shape_str(char *buf, size_t len, const int64_t *s, int nd)
{
    size_t k = 0;
    buf[0] = '\0';
    for (int i = 0; i < nd && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? ", " : "", (long long)s[i]);
}

int sbert_st_get_f32(sbert_st_file *f, const char *name, const int64_t *shape, int ndim,
                     const float **data, char *errbuf, size_t errlen)
{
    const struct tensor *t = find(f, name);
    if (!t)
        return sbert_util_errf(errbuf, errlen, SBERT_EFORMAT, "%s: tensor \"%s\" is missing",
                               f->path, name);
    if (t->dtype == DT_OTHER)
        return sbert_util_errf(errbuf, errlen, SBERT_EUNSUPPORTED,
                               "%s: tensor \"%s\" has dtype %s (supported: F32, F16, BF16)",
                               f->path, t->name, t->dtype_name);
    if (t->ndim != ndim || memcmp(t->shape, shape, (size_t)ndim * sizeof *shape)) {
        char want[128], got[128];
        shape_str(want, sizeof want, shape, ndim);
        shape_str(got, sizeof got, t->shape, t->ndim);
        return sbert_util_errf(errbuf, errlen, SBERT_EFORMAT,
                               "%s: tensor \"%s\" has shape [%s], config.json implies [%s]",
                               f->path, t->name, got, want);
    }
    const uint8_t *src = f->map + t->begin;
    size_t count = t->dtype == DT_F32 ? (t->end - t->begin) / 4 : (t->end - t->begin) / 2;
    if (t->dtype == DT_F32 && ((uintptr_t)src & 3) == 0 &&
        __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) {
        *data = (const float *)(const void *)src;
        return 0;
    }
    void **grown = realloc(f->owned, (f->nowned + 1) * sizeof *grown);
    if (!grown) return SBERT_ENOMEM;
    f->owned = grown;
    float *buf = malloc(count ? count * sizeof *buf : 1);
    if (!buf) return SBERT_ENOMEM;
    f->owned[f->nowned++] = buf;
    for (size_t i = 0; i < count; i++) {
        if (t->dtype == DT_F32) {
            uint32_t b = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
                         (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;
            memcpy(&buf[i], &b, 4);
        } else {
            uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
            if (t->dtype == DT_F16) {
                buf[i] = half_to_float(h);
            } else {
                uint32_t b = (uint32_t)h << 16;
                memcpy(&buf[i], &b, 4);
            }
        }
    }
    *data = buf;
    return 0;
}
