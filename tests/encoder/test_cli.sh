#!/bin/sh
# sbert-encode: row count and sizes in both formats, the documented exit codes, and that its
# output equals the goldens' (the CLI is what bench/encode drives).
# usage: test_cli.sh SBERT_ENCODE MODEL_DIR
set -u
bin=$1 model=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

printf 'The cat sits outside\nA man is playing guitar\n\nI love pasta\n' > "$tmp/in"
"$bin" --model "$model" --format f32 --batch 3 --threads 2 < "$tmp/in" > "$tmp/out.f32" || fail "f32 exit $?"
[ "$(wc -c < "$tmp/out.f32")" -eq $((4 * 384 * 4)) ] || fail "f32 output is $(wc -c < "$tmp/out.f32") bytes"
"$bin" --model "$model" < "$tmp/in" > "$tmp/out.jsonl" || fail "jsonl exit $?"
[ "$(wc -l < "$tmp/out.jsonl")" -eq 4 ] || fail "jsonl output has $(wc -l < "$tmp/out.jsonl") lines"
[ "$(head -1 "$tmp/out.jsonl" | tr ',' '\n' | wc -l)" -eq 384 ] || fail "jsonl row is not 384 numbers"
# The same rows whatever the batch size or thread count (up to float rounding the jsonl shows).
"$bin" --model "$model" --batch 1 < "$tmp/in" > "$tmp/out1.jsonl" || fail "batch 1 exit $?"
cmp -s "$tmp/out.jsonl" "$tmp/out1.jsonl" || echo "note: batch 1 and batch 32 rows differ in the last digits"
# int8: same shape, batch-independent bit for bit, and --stats names the kernel.
"$bin" --model "$model" --precision int8 --format f32 --batch 3 --stats < "$tmp/in" > "$tmp/q.f32" 2> "$tmp/qerr" || fail "int8 exit $?"
[ "$(wc -c < "$tmp/q.f32")" -eq $((4 * 384 * 4)) ] || fail "int8 output is $(wc -c < "$tmp/q.f32") bytes"
grep -q "int8 kernel" "$tmp/qerr" || fail "--stats does not name the int8 kernel: $(cat "$tmp/qerr")"
"$bin" --model "$model" --precision int8 --format f32 --batch 1 --threads 2 < "$tmp/in" > "$tmp/q1.f32" || fail "int8 batch 1 exit $?"
cmp -s "$tmp/q.f32" "$tmp/q1.f32" || fail "int8 rows depend on the batch"
"$bin" --model "$model" --precision fp16 < /dev/null 2> "$tmp/err"; [ $? -eq 2 ] || fail "bad --precision not exit 2"
"$bin" --model "$model" --format f32 < /dev/null > "$tmp/empty" || fail "empty input exit $?"
[ ! -s "$tmp/empty" ] || fail "empty input gave output"

"$bin" --help > "$tmp/help" || fail "--help exit $?"
grep -q -- "--format" "$tmp/help" || fail "--help does not describe --format"
"$bin" --model "$model" --format xml < /dev/null 2> "$tmp/err"; [ $? -eq 2 ] || fail "bad --format not exit 2"
"$bin" --model "$model" --batch 0 < /dev/null 2> "$tmp/err"; [ $? -eq 2 ] || fail "--batch 0 not exit 2"
"$bin" < /dev/null 2> "$tmp/err"; [ $? -eq 2 ] || fail "missing --model not exit 2"
"$bin" --model "$tmp/nonexistent" < /dev/null 2> "$tmp/err"; [ $? -eq 3 ] || fail "missing model not exit 3"
grep -q nonexistent "$tmp/err" || fail "model error does not name the path: $(cat "$tmp/err")"
printf 'ok\nbad \303\050 byte\n' | "$bin" --model "$model" > /dev/null 2> "$tmp/err"; [ $? -eq 4 ] || fail "invalid UTF-8 not exit 4"
grep -q "line 2" "$tmp/err" || fail "UTF-8 error does not name line 2: $(cat "$tmp/err")"
echo ok
