/*
 * vindex_lset.c — the label set of vindex_impl.h: open addressing, linear probing, backward-shift
 * deletion; keys are labels >= 0. The live labels of an index, and scratch sets of a batch.
 */
#include <stdlib.h>
#include <string.h>

#include "vindex_impl.h"

static size_t lset_hash(int64_t k)
{
    uint64_t x = (uint64_t)k + 0x9e3779b97f4a7c15ULL; /* splitmix64 finaliser */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return (size_t)(x ^ (x >> 31));
}

int vindex_lset_reserve(struct lset *s, size_t want)
{
    if ((want + 1) * 10 <= s->cap * 7) return 0;
    size_t cap = s->cap ? s->cap : 64;
    while ((want + 1) * 10 > cap * 7)
        cap *= 2;
    int64_t *slots = malloc(cap * sizeof *slots);
    if (!slots) return VINDEX_ENOMEM;
    memset(slots, 0xff, cap * sizeof *slots);
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i] < 0) continue;
        size_t j = lset_hash(s->slots[i]) & (cap - 1);
        while (slots[j] >= 0)
            j = (j + 1) & (cap - 1);
        slots[j] = s->slots[i];
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return 0;
}

int vindex_lset_has(const struct lset *s, int64_t k)
{
    if (!s->cap) return 0;
    for (size_t j = lset_hash(k) & (s->cap - 1);; j = (j + 1) & (s->cap - 1)) {
        if (s->slots[j] == k) return 1;
        if (s->slots[j] < 0) return 0;
    }
}

/* The caller has reserved room. */
void vindex_lset_put(struct lset *s, int64_t k)
{
    size_t j = lset_hash(k) & (s->cap - 1);
    while (s->slots[j] >= 0) {
        if (s->slots[j] == k) return;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = k;
    s->n++;
}

int vindex_lset_del(struct lset *s, int64_t k)
{
    if (!s->cap) return 0;
    size_t mask = s->cap - 1, j = lset_hash(k) & mask;
    while (s->slots[j] != k) {
        if (s->slots[j] < 0) return 0;
        j = (j + 1) & mask;
    }
    /* Backward shift: move later entries of the probe run into the hole when their home slot
     * does not lie cyclically in (hole, current]. */
    size_t hole = j;
    for (size_t i = (j + 1) & mask; s->slots[i] >= 0; i = (i + 1) & mask) {
        size_t home = lset_hash(s->slots[i]) & mask;
        int stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
        if (!stays) {
            s->slots[hole] = s->slots[i];
            hole = i;
        }
    }
    s->slots[hole] = -1;
    s->n--;
    return 1;
}

void vindex_lset_free(struct lset *s)
{
    free(s->slots);
    memset(s, 0, sizeof *s);
}
