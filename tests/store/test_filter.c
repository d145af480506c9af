/*
 * test_filter.c — the metadata filter language: every operator's semantics (including missing
 * fields and type mismatches), arrays, dotted paths, $exists, $contains/$icontains, the $text
 * condition on the document, $and/$or/$not, and the errors of bad filters and filter bombs.
 */
#include "t.h"

#include "filter.h"

/* Compiles filter, evaluates it on meta, returns the match (or -100 - error when it fails). */
static int eval(const char *filter, const char *meta)
{
    sbert_index_filter *f;
    char err[256];
    int rc = sbert_index_filter_compile(filter, strlen(filter), &f, err, sizeof err);
    if (rc) {
        fprintf(stderr, "  compile %s: %s\n", filter, err);
        return -100 + rc;
    }
    int m = sbert_index_filter_match(f, meta, meta ? strlen(meta) : 0);
    sbert_index_filter_free(f);
    return m;
}

/* Expects compilation to fail with EFILTER and the message to contain want. */
static void bad(const char *filter, size_t len, const char *want, int line)
{
    sbert_index_filter *f = (sbert_index_filter *)1;
    char err[512] = "";
    int rc = sbert_index_filter_compile(filter, len, &f, err, sizeof err);
    if (rc != SBERT_INDEX_EFILTER || f != NULL || !strstr(err, want)) {
        fprintf(stderr,
                "test_filter.c:%d: bad filter %.80s: rc %d, message \"%s\", wanted \"%s\"\n", line,
                filter, rc, err, want);
        t_failures++;
        if (rc == 0) sbert_index_filter_free(f);
    }
}
#define BAD(f, want) bad((f), strlen(f), (want), __LINE__)

/* eval with the document's text, for $text; the parsed-tree evaluator must agree. */
static int eval_doc(const char *filter, const char *meta, const char *text)
{
    sbert_index_filter *f;
    char err[256];
    int rc = sbert_index_filter_compile(filter, strlen(filter), &f, err, sizeof err);
    if (rc) {
        fprintf(stderr, "  compile %s: %s\n", filter, err);
        return -100 + rc;
    }
    int m = filter_match_doc(f, meta, meta ? strlen(meta) : 0, text, text ? strlen(text) : 0);
    sbert_index_filter_free(f);
    return m;
}

/* Arrays, paths, $exists, $contains, $icontains, $text, $not (issue 11). */
static void test_new_operators(void)
{
    const char *m = "{\"tags\":[\"red\",\"Blue\",3],\"title\":\"Straße in Köln\","
                    "\"a\":{\"b\":{\"c\":5},\"n\":null},\"x.y\":1,\"x\":{\"y\":2},"
                    "\"empty\":null}";
    /* an array field matches when one element does: $eq, $in, $ne, $nin, order */
    CHECK(eval("{\"tags\":\"red\"}", m) == 1);
    CHECK(eval("{\"tags\":\"blue\"}", m) == 0);
    CHECK(eval("{\"tags\":{\"$in\":[\"green\",3]}}", m) == 1);
    CHECK(eval("{\"tags\":{\"$nin\":[\"green\",\"red\"]}}", m) == 0);
    CHECK(eval("{\"tags\":{\"$ne\":\"green\"}}", m) == 1);
    CHECK(eval("{\"tags\":{\"$gt\":2}}", m) == 1);
    CHECK(eval("{\"tags\":{\"$gt\":3}}", m) == 0);
    /* $contains: an array element, or a substring of a string; $icontains folds case (Unicode) */
    CHECK(eval("{\"tags\":{\"$contains\":\"Blue\"}}", m) == 1);
    CHECK(eval("{\"tags\":{\"$contains\":3}}", m) == 1);
    CHECK(eval("{\"tags\":{\"$contains\":\"Bl\"}}", m) == 1); /* substring of an element */
    CHECK(eval("{\"title\":{\"$contains\":\"in K\"}}", m) == 1);
    CHECK(eval("{\"title\":{\"$contains\":\"STRASSE\"}}", m) == 0);
    CHECK(eval("{\"title\":{\"$icontains\":\"STRASSE IN köln\"}}", m) == 1);
    CHECK(eval("{\"tags\":{\"$icontains\":\"BLUE\"}}", m) == 1);
    CHECK(eval("{\"missing\":{\"$contains\":\"x\"}}", m) == 0);
    /* $exists: null counts as present */
    CHECK(eval("{\"empty\":{\"$exists\":true}}", m) == 1);
    CHECK(eval("{\"missing\":{\"$exists\":false}}", m) == 1);
    CHECK(eval("{\"title\":{\"$exists\":false}}", m) == 0);
    /* dotted paths; an exact top-level key of that name comes first */
    CHECK(eval("{\"a.b.c\":5}", m) == 1);
    CHECK(eval("{\"a.b.c\":{\"$gte\":6}}", m) == 0);
    CHECK(eval("{\"a.n\":{\"$exists\":true}}", m) == 1);
    CHECK(eval("{\"a.b.c.d\":{\"$exists\":true}}", m) == 0);
    CHECK(eval("{\"a.zz\":{\"$exists\":false}}", m) == 1);
    CHECK(eval("{\"x.y\":1}", m) == 1);
    CHECK(eval("{\"tags.0\":{\"$exists\":true}}", m) == 0); /* paths go through objects only */
    /* $not */
    CHECK(eval("{\"$not\":{\"tags\":\"red\"}}", m) == 0);
    CHECK(eval("{\"$not\":{\"$or\":[{\"tags\":\"green\"},{\"a.b.c\":4}]}}", m) == 1);
    /* $text: the document itself */
    CHECK(eval_doc("{\"$text\":{\"$contains\":\"rocket\"}}", m, "A rocket to the moon") == 1);
    CHECK(eval_doc("{\"$text\":{\"$contains\":\"Rocket\"}}", m, "A rocket to the moon") == 0);
    CHECK(eval_doc("{\"$text\":{\"$icontains\":\"ROCKET\"}}", m, "A rocket to the moon") == 1);
    CHECK(eval_doc("{\"$text\":{\"$icontains\":\"rocket\"},\"tags\":\"red\"}", m, "Rockets!") == 1);
    CHECK(eval_doc("{\"$not\":{\"$text\":{\"$contains\":\"moon\"}}}", NULL, "sun") == 1);
    CHECK(eval_doc("{\"$text\":{\"$contains\":\"x\"}}", NULL, NULL) == 0);
    /* the raw scanner (no arrays, no paths) and the tree give the same answers */
    const char *flat = "{\"k\":\"Hello World\",\"n\":null,\"o\":{\"p\":1}}";
    CHECK(eval("{\"k\":{\"$icontains\":\"WORLD\"},\"n\":{\"$exists\":true}}", flat) == 1);
    CHECK(eval("{\"o\":{\"$exists\":true},\"o\":{\"$ne\":1}}", flat) == 1);

    BAD("{\"a\":{\"$exists\":1}}", "$exists needs true or false, got number");
    BAD("{\"a\":{\"$icontains\":1}}", "$icontains needs a string, got number");
    BAD("{\"$text\":\"x\"}", "$text needs an operator object");
    BAD("{\"$text\":{\"$eq\":\"x\"}}", "$text takes $contains or $icontains, not $eq");
    BAD("{\"$text\":{\"$contains\":3}}", "$contains needs a string, got number");
    BAD("{\"$not\":[{\"a\":1}]}", "$not needs a filter object, got array");
}

int main(void)
{
    test_new_operators();
    const char *m = "{\"genre\":\"news\",\"year\":2019,\"score\":0.5,\"draft\":false,"
                    "\"tags\":[\"a\"],\"nested\":{\"x\":1}}";

    /* equality, implicit and $eq; strings, numbers, bools; type mismatch is false */
    CHECK(eval("{\"genre\":\"news\"}", m) == 1);
    CHECK(eval("{\"genre\":\"sport\"}", m) == 0);
    CHECK(eval("{\"year\":2019}", m) == 1);
    CHECK(eval("{\"year\":2019.0}", m) == 1);
    CHECK(eval("{\"year\":\"2019\"}", m) == 0);
    CHECK(eval("{\"draft\":false}", m) == 1);
    CHECK(eval("{\"draft\":true}", m) == 0);
    CHECK(eval("{\"draft\":0}", m) == 0);
    CHECK(eval("{\"genre\":{\"$eq\":\"news\"}}", m) == 1);
    CHECK(eval("{\"missing\":\"x\"}", m) == 0);
    /* $ne: true for other values, other types and missing fields */
    CHECK(eval("{\"genre\":{\"$ne\":\"news\"}}", m) == 0);
    CHECK(eval("{\"genre\":{\"$ne\":\"sport\"}}", m) == 1);
    CHECK(eval("{\"year\":{\"$ne\":\"2019\"}}", m) == 1);
    CHECK(eval("{\"missing\":{\"$ne\":1}}", m) == 1);
    /* order comparisons on numbers only */
    CHECK(eval("{\"year\":{\"$gt\":2018}}", m) == 1);
    CHECK(eval("{\"year\":{\"$gt\":2019}}", m) == 0);
    CHECK(eval("{\"year\":{\"$gte\":2019}}", m) == 1);
    CHECK(eval("{\"year\":{\"$lt\":2019}}", m) == 0);
    CHECK(eval("{\"year\":{\"$lte\":2019}}", m) == 1);
    CHECK(eval("{\"score\":{\"$lt\":0.75}}", m) == 1);
    CHECK(eval("{\"genre\":{\"$gt\":0}}", m) == 0);
    CHECK(eval("{\"missing\":{\"$lt\":1e9}}", m) == 0);
    /* several operators on one field are ANDed: a range */
    CHECK(eval("{\"year\":{\"$gte\":2000,\"$lt\":2020}}", m) == 1);
    CHECK(eval("{\"year\":{\"$gte\":2000,\"$lt\":2019}}", m) == 0);
    /* $in / $nin with mixed types */
    CHECK(eval("{\"genre\":{\"$in\":[\"sport\",\"news\"]}}", m) == 1);
    CHECK(eval("{\"genre\":{\"$in\":[\"sport\",1]}}", m) == 0);
    CHECK(eval("{\"year\":{\"$in\":[\"x\",2019]}}", m) == 1);
    CHECK(eval("{\"draft\":{\"$in\":[false]}}", m) == 1);
    CHECK(eval("{\"genre\":{\"$nin\":[\"sport\",\"news\"]}}", m) == 0);
    CHECK(eval("{\"genre\":{\"$nin\":[\"sport\"]}}", m) == 1);
    CHECK(eval("{\"missing\":{\"$nin\":[\"sport\"]}}", m) == 1);
    CHECK(eval("{\"missing\":{\"$in\":[\"sport\"]}}", m) == 0);
    /* an array matches through its elements; an object equals no scalar */
    CHECK(eval("{\"tags\":\"a\"}", m) == 1);
    CHECK(eval("{\"tags\":\"b\"}", m) == 0);
    CHECK(eval("{\"nested\":{\"$ne\":1}}", m) == 1);
    /* keys are ANDed; $and, $or, nesting */
    CHECK(eval("{\"genre\":\"news\",\"year\":2019}", m) == 1);
    CHECK(eval("{\"genre\":\"news\",\"year\":2018}", m) == 0);
    CHECK(eval("{\"$and\":[{\"genre\":\"news\"},{\"year\":{\"$gt\":2000}}]}", m) == 1);
    CHECK(eval("{\"$and\":[{\"genre\":\"news\"},{\"year\":{\"$gt\":2020}}]}", m) == 0);
    CHECK(eval("{\"$or\":[{\"genre\":\"sport\"},{\"year\":{\"$gt\":2000}}]}", m) == 1);
    CHECK(eval("{\"$or\":[{\"genre\":\"sport\"},{\"year\":{\"$gt\":2020}}]}", m) == 0);
    CHECK(eval("{\"$or\":[{\"$and\":[{\"genre\":\"news\"},{\"draft\":false}]},{\"x\":1}],"
               "\"score\":{\"$gte\":0.5}}",
               m) == 1);
    /* the empty filter matches everything; a document without metadata is an empty object */
    CHECK(eval("{}", m) == 1);
    CHECK(eval("{}", NULL) == 1);
    CHECK(eval("{\"genre\":\"news\"}", NULL) == 0);
    CHECK(eval("{\"genre\":{\"$ne\":\"news\"}}", NULL) == 1);
    /* metadata that is not an object */
    {
        sbert_index_filter *f;
        CHECK_RC(sbert_index_filter_compile("{}", 2, &f, NULL, 0), 0);
        CHECK(sbert_index_filter_match(f, "[1]", 3) == SBERT_INDEX_EMETADATA);
        CHECK(sbert_index_filter_match(f, "{bad", 4) == SBERT_INDEX_EMETADATA);
        sbert_index_filter_free(f);
    }

    /* errors name the bad part */
    BAD("", "not valid JSON");
    BAD("{\"a\":", "not valid JSON");
    BAD("[1,2]", "must be a JSON object, got array");
    BAD("\"x\"", "must be a JSON object, got string");
    BAD("{\"year\":{\"$gt\":\"2019\"}}", "year.$gt: $gt needs a number, got string");
    BAD("{\"year\":{\"$between\":[1,2]}}", "unknown operator \"$between\"");
    BAD("{\"$nor\":[{\"a\":1}]}", "unknown logical operator \"$nor\"");
    BAD("{\"$and\":{\"a\":1}}", "$and needs a non-empty array of filters, got object");
    BAD("{\"$or\":[]}", "$or needs a non-empty array of filters, got an empty array");
    BAD("{\"$and\":[{\"a\":1},3]}", "$and[1]: must be a filter object, got number");
    BAD("{\"$and\":[{\"a\":1},{\"y\":{\"$lt\":true}}]}",
        "$and[1].y.$lt: $lt needs a number, got bool");
    BAD("{\"a\":{\"$in\":[]}}", "$in needs a non-empty array, got an empty array");
    BAD("{\"a\":{\"$nin\":\"x\"}}", "$nin needs a non-empty array, got string");
    BAD("{\"a\":{\"$in\":[1,[2]]}}", "a.$in[1]: $in needs a string, number or bool, got array");
    BAD("{\"a\":null}", "got null");
    BAD("{\"a\":[1,2]}", "got array");
    BAD("{\"a\":{}}", "empty operator object");
    BAD("{\"a\":{\"$eq\":null}}", "$eq needs a string, number or bool, got null");
    BAD("{\"\":1}", "empty field name");

    /* filter bombs: deep nesting, many nodes, huge input: refused quickly, no crash */
    {
        size_t depth = 100000, cap = depth * 12 + 64, n = 0;
        char *s = malloc(cap);
        for (size_t i = 0; i < depth; i++)
            n += (size_t)sprintf(s + n, "{\"$or\":[");
        n += (size_t)sprintf(s + n, "{\"a\":1}");
        for (size_t i = 0; i < depth; i++)
            n += (size_t)sprintf(s + n, "]}");
        bad(s, n, "more than the limit", __LINE__); /* over the byte limit */
        /* within the byte limit, but deeper than cJSON allows or than our limit */
        size_t d2 = 2000;
        n = 0;
        for (size_t i = 0; i < d2; i++)
            n += (size_t)sprintf(s + n, "{\"$or\":[");
        n += (size_t)sprintf(s + n, "{\"a\":1}");
        for (size_t i = 0; i < d2; i++)
            n += (size_t)sprintf(s + n, "]}");
        bad(s, n, "not valid JSON", __LINE__);
        size_t d3 = SBERT_INDEX_FILTER_MAX_DEPTH + 1;
        n = 0;
        for (size_t i = 0; i < d3; i++)
            n += (size_t)sprintf(s + n, "{\"$and\":[");
        n += (size_t)sprintf(s + n, "{\"a\":1}");
        for (size_t i = 0; i < d3; i++)
            n += (size_t)sprintf(s + n, "]}");
        bad(s, n, "nested deeper than", __LINE__);
        /* exactly at the limit compiles */
        n = 0;
        for (size_t i = 0; i < SBERT_INDEX_FILTER_MAX_DEPTH; i++)
            n += (size_t)sprintf(s + n, "{\"$and\":[");
        n += (size_t)sprintf(s + n, "{\"a\":1}");
        for (size_t i = 0; i < SBERT_INDEX_FILTER_MAX_DEPTH; i++)
            n += (size_t)sprintf(s + n, "]}");
        sbert_index_filter *f;
        CHECK_RC(sbert_index_filter_compile(s, n, &f, NULL, 0), 0);
        CHECK(sbert_index_filter_match(f, "{\"a\":1}", 7) == 1);
        CHECK(sbert_index_filter_match(f, "{\"a\":2}", 7) == 0);
        sbert_index_filter_free(f);
        /* wide: more nodes than allowed */
        n = (size_t)sprintf(s, "{\"a\":{\"$in\":[");
        for (int i = 0; i < SBERT_INDEX_FILTER_MAX_NODES + 10; i++)
            n += (size_t)sprintf(s + n, "%s%d", i ? "," : "", i);
        n += (size_t)sprintf(s + n, "]}}");
        bad(s, n, "more than 1024 nodes", __LINE__);
        n = (size_t)sprintf(s, "{\"$or\":[");
        for (int i = 0; i < SBERT_INDEX_FILTER_MAX_NODES + 10; i++)
            n += (size_t)sprintf(s + n, "%s{\"a\":%d}", i ? "," : "", i);
        n += (size_t)sprintf(s + n, "]}");
        bad(s, n, "more than 1024 nodes", __LINE__);
        free(s);
    }

    /* the text scanner (sbert_index_filter_match) agrees with evaluation on cJSON's tree, on
     * random metadata (escapes, nesting, duplicate keys, odd spacing) and random filters */
    {
        static const char *vals[] = {"1",           "2",
                                     "2.5",         "-1e3",
                                     "0",           "\"a\"",
                                     "\"b\"",       "\"a\\\"q\"",
                                     "\"\\u0061\"", "true",
                                     "false",       "null",
                                     "[1,\"a\"]",   "{\"a\":1,\"b\":[{}]}",
                                     "\"日本\"",    "\"\""};
        static const char *keys[] = {"a", "b", "c", "a\\u0062", "d"};
        static const char *conds[] = {"\"a\"",
                                      "1",
                                      "2",
                                      "\"b\"",
                                      "true",
                                      "{\"$ne\":1}",
                                      "{\"$gt\":1}",
                                      "{\"$lte\":2}",
                                      "{\"$in\":[1,\"a\",false]}",
                                      "{\"$nin\":[\"b\",2.5]}",
                                      "{\"$eq\":\"\"}",
                                      "{\"$gte\":-1000,\"$lt\":2}",
                                      "\"日本\"",
                                      "\"a\\\"q\""};
        uint64_t seed = 12345;
        int disagree = 0, outcomes[3] = {0, 0, 0};
        for (int iter = 0; iter < 20000; iter++) {
            char meta[512], filt[512];
            size_t n = 0;
            int nk = (int)(t_rand(&seed) % 5);
            n += (size_t)sprintf(meta + n, "%s{", t_rand(&seed) % 2 ? " " : "");
            for (int i = 0; i < nk; i++)
                n += (size_t)sprintf(meta + n, "%s\"%s\" :%s%s", i ? " ," : "",
                                     keys[t_rand(&seed) % 5], t_rand(&seed) % 2 ? " " : "",
                                     vals[t_rand(&seed) % 16]);
            n += (size_t)sprintf(meta + n, "}");
            size_t fn = (size_t)sprintf(filt, "{\"$or\":[{\"%s\":%s},{\"%s\":%s,\"%s\":%s}]}",
                                        keys[t_rand(&seed) % 3], conds[t_rand(&seed) % 14],
                                        keys[t_rand(&seed) % 3], conds[t_rand(&seed) % 14],
                                        keys[t_rand(&seed) % 3], conds[t_rand(&seed) % 14]);
            sbert_index_filter *f;
            char err[256];
            if (sbert_index_filter_compile(filt, fn, &f, err, sizeof err)) {
                fprintf(stderr, "differential: %s: %s\n", filt, err);
                t_failures++;
                break;
            }
            cJSON *j = cJSON_ParseWithLength(meta, n);
            int want = j ? filter_match_json(f, j) : SBERT_INDEX_EMETADATA;
            cJSON_Delete(j);
            int got = sbert_index_filter_match(f, meta, n);
            outcomes[want == 1 ? 1 : want == 0 ? 0 : 2]++;
            if (got != want && disagree++ < 5)
                fprintf(stderr, "differential: filter %s on %s: scanner %d, tree %d\n", filt, meta,
                        got, want);
            sbert_index_filter_free(f);
        }
        CHECK(disagree == 0);
        /* the generator must exercise both answers */
        fprintf(stderr, "differential: %d match, %d no match, %d not an object\n", outcomes[1],
                outcomes[0], outcomes[2]);
        CHECK(outcomes[0] > 2000 && outcomes[1] > 2000);
    }

    /* NULL arguments */
    {
        sbert_index_filter *f;
        CHECK(sbert_index_filter_compile(NULL, 0, &f, NULL, 0) == SBERT_INDEX_EINVAL);
        sbert_index_filter_free(NULL);
    }

    if (t_failures) fprintf(stderr, "test_filter: %d failure(s)\n", t_failures);
    return t_failures ? 1 : 0;
}
