#!/bin/sh
# The instruction encoding of the AVX-VNNI kernels and of their test twins.
# usage: vnni_encoding.sh OBJDUMP FILE SYMBOL vex|evex [FILE SYMBOL vex|evex ...]
#
# vex: SYMBOL's vpdpbusd are all the VEX form ({vex}) and nothing in it is EVEX (no 0x62 prefix,
# no zmm, no mask register, no ymm/xmm16-31): the CPUs the kernels are for (Alder Lake, Sierra
# Forest) have no AVX-512, and few CPUs that run the tests have AVX-VNNI, so an EVEX slip would
# pass every other test and fault only on those CPUs.
# evex: SYMBOL's vpdpbusd are all EVEX: the twin runs on AVX512-VNNI CPUs without AVX-VNNI.
set -u
objdump=$1
shift
fail() { echo "FAIL: $*" >&2; exit 1; }
while [ $# -ge 3 ]; do
    file=$1 sym=$2 want=$3
    shift 3
    dis=$("$objdump" "--disassemble=$sym" "$file") || fail "$objdump $file"
    # instruction lines: address, raw bytes, mnemonic and operands, separated by tabs
    insn=$(printf '%s\n' "$dis" | awk -F'\t' 'NF >= 3 && $1 ~ /^ *[0-9a-f]+:$/')
    n=$(printf '%s\n' "$insn" | grep -c 'vpdpbusd')
    [ "$n" -gt 0 ] || fail "$sym in $file: no vpdpbusd"
    case $want in
    vex)
        bad=$(printf '%s\n' "$insn" | grep 'vpdpbusd' | grep -v '{vex}' | head -3)
        [ -z "$bad" ] || fail "$sym in $file: vpdpbusd not VEX: $bad"
        bad=$(printf '%s\n' "$insn" | awk -F'\t' '$2 ~ /^62 /' | head -3)
        [ -z "$bad" ] || fail "$sym in $file: EVEX instructions: $bad"
        bad=$(printf '%s\n' "$insn" | grep -E '%zmm|%k[0-7]|%[xy]mm(1[6-9]|2[0-9]|3[01])' | head -3)
        [ -z "$bad" ] || fail "$sym in $file: AVX-512 registers: $bad"
        ;;
    evex)
        bad=$(printf '%s\n' "$insn" | grep 'vpdpbusd' | awk -F'\t' '$2 !~ /^62 /' | head -3)
        [ -z "$bad" ] || fail "$sym in $file: vpdpbusd not EVEX: $bad"
        ;;
    *) fail "want vex or evex, not $want" ;;
    esac
    echo "$sym: $n vpdpbusd, $want"
done
[ $# -eq 0 ] || fail "arguments left: $*"
