/* abi.c — sbert_c.h over sbert.h: the exported, stable face of libsbert.so. */
#include "sbert_c.h"

#include "sbert.h"

#include <stdlib.h>

/* sbert_c.h promises sbert.h's numbers: a change there must not change the ABI silently. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(SBERT_C_ENOMEM, SBERT_ENOMEM) && SAME(SBERT_C_EIO, SBERT_EIO) &&
                   SAME(SBERT_C_EFORMAT, SBERT_EFORMAT) &&
                   SAME(SBERT_C_EUNSUPPORTED, SBERT_EUNSUPPORTED) &&
                   SAME(SBERT_C_EUTF8, SBERT_EUTF8) && SAME(SBERT_C_EINVAL, SBERT_EINVAL) &&
                   SAME(SBERT_C_ETHREAD, SBERT_ETHREAD),
               "sbert_c.h error codes differ from sbert.h's");

struct sbert_c_encoder {
    sbert_model *model;
    int dim, max_seq_length;
};

int sbert_c_abi_version(void)
{
    return SBERT_C_ABI_VERSION;
}

const char *sbert_c_strerror(int err)
{
    return sbert_strerror(err);
}

int sbert_c_encoder_create(const char *model_dir, int n_threads, sbert_c_encoder **out,
                           char *errbuf, size_t errlen)
{
    if (errbuf && errlen) errbuf[0] = '\0';
    if (!out) return SBERT_C_EINVAL;
    *out = NULL;
    if (!model_dir || n_threads < 0) return SBERT_C_EINVAL;
    sbert_c_encoder *e = calloc(1, sizeof *e);
    if (!e) return SBERT_C_ENOMEM;
    struct sbert_model_params p = sbert_model_default_params();
    p.n_threads = n_threads > 0 ? n_threads : 1;
    int rc = sbert_model_load(model_dir, &p, &e->model, errbuf, errlen);
    if (rc) {
        free(e);
        return rc;
    }
    const struct sbert_model_info *info = sbert_model_info(e->model);
    e->dim = info->dim;
    e->max_seq_length = info->max_seq_length;
    *out = e;
    return 0;
}

void sbert_c_encoder_free(sbert_c_encoder *e)
{
    if (!e) return;
    sbert_model_free(e->model);
    free(e);
}

int sbert_c_encoder_dim(const sbert_c_encoder *e)
{
    return e ? e->dim : SBERT_C_EINVAL;
}

int sbert_c_encoder_max_seq_length(const sbert_c_encoder *e)
{
    return e ? e->max_seq_length : SBERT_C_EINVAL;
}

int sbert_c_encoder_encode(const sbert_c_encoder *e, const char *const *texts, const size_t *lens,
                           size_t n, float *out, int *truncated, size_t *bad_index)
{
    if (!e || (n && (!texts || !out))) return SBERT_C_EINVAL;
    if (n == 0) return 0;
    return sbert_encode(e->model, texts, lens, n, out, NULL, truncated, bad_index);
}
