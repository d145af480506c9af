/*
 * The seed article's second example (../shared/seeds/000_b0c12c129953b08e.txt): eight sentences,
 * all-MiniLM-L6-v2, the ten most similar pairs by cosine with the scores the article prints. The
 * table below is the article's output, typed in; we must reproduce it to +-0.0001.
 * usage: test_seed MODEL_DIR
 */
#include "sbert.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

static const char *const sentences[8] = {
    "The cat sits outside",      "A man is playing guitar",     "I love pasta",
    "The new movie is awesome",  "The cat plays in the garden", "A woman watches TV",
    "The new movie is so great", "Do you like pizza?",
};

static const struct {
    int i, j;
    double score;
} article[10] = {
    {3, 6, 0.8939}, {0, 4, 0.6788}, {2, 7, 0.5096}, {2, 6, 0.2560}, {2, 3, 0.2440},
    {1, 4, 0.2105}, {3, 7, 0.1969}, {6, 7, 0.1692}, {0, 5, 0.1310}, {4, 7, 0.0900},
};

int main(int argc, char **argv)
{
    CHECK(argc == 2, "usage: test_seed MODEL_DIR");
    sbert_model *m;
    char err[512];
    int rc = sbert_model_load(argv[1], NULL, &m, err, sizeof err);
    CHECK(rc == 0, "load: %s", err);
    const int dim = sbert_model_info(m)->dim;
    float e[8][384];
    CHECK(dim == 384, "dim %d", dim);
    rc = sbert_encode(m, sentences, NULL, 8, &e[0][0], NULL, NULL, NULL);
    CHECK(rc == 0, "encode: %s", sbert_strerror(rc));

    /* util.cos_sim over all pairs i < j, sorted by score descending, top ten. */
    struct {
        int i, j;
        double s;
    } pairs[28], t;
    int np = 0;
    for (int i = 0; i < 8; i++)
        for (int j = i + 1; j < 8; j++) {
            double ab = 0, aa = 0, bb = 0;
            for (int k = 0; k < dim; k++) {
                ab += (double)e[i][k] * e[j][k];
                aa += (double)e[i][k] * e[i][k];
                bb += (double)e[j][k] * e[j][k];
            }
            pairs[np].i = i;
            pairs[np].j = j;
            pairs[np++].s = ab / sqrt(aa * bb);
        }
    for (int a = 1; a < np; a++)
        for (int b = a; b > 0 && pairs[b].s > pairs[b - 1].s; b--) {
            t = pairs[b];
            pairs[b] = pairs[b - 1];
            pairs[b - 1] = t;
        }
    for (int k = 0; k < 10; k++) {
        printf("%-28s %-28s Score: %.4f (article %.4f)\n", sentences[pairs[k].i],
               sentences[pairs[k].j], pairs[k].s, article[k].score);
        CHECK(pairs[k].i == article[k].i && pairs[k].j == article[k].j,
              "rank %d: pair (%d, %d), the article has (%d, %d)", k + 1, pairs[k].i, pairs[k].j,
              article[k].i, article[k].j);
        CHECK(fabs(pairs[k].s - article[k].score) <= 0.0001 + 1e-9,
              "rank %d: score %.6f, the article prints %.4f", k + 1, pairs[k].s, article[k].score);
    }
    sbert_model_free(m);
    return 0;
}
