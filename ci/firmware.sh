#!/usr/bin/env bash
# Builds the firmware under transports/embassy/firmware/ for thumbv6m-none-eabi and
# thumbv7em-none-eabihf, runs each under QEMU, decodes its defmt log on the host (defmt-print),
# fails if any run fails or logs no election, and prints code size, static RAM and stack
# high-water per firmware and target.
#
# Toolchain: rustup here has only the host target, so the firmware is built with Debian's
# rustc-web / cargo-web 1.96 (standard library source in rust-web-src, -Zbuild-std=core with
# RUSTC_BOOTSTRAP=1) and linked with binutils' arm-none-eabi-ld. QEMU: Debian's
# qemu-system-arm 7.2, unpacked into /opt/raftlet-qemu instead of installed (installing it
# would remove the machine's newer qemu-utils). Both are installed here if missing.
#
# A firmware with an `overflow-test` feature is also built with it and must report that its
# stack guard turned a deliberate overflow into a HardFault before the statics were touched.
#
# Boards: Cortex-M3 `lm3s6965evb` (256 KiB flash, 64 KiB RAM) for thumbv6m; Cortex-M4F
# `netduinoplus2` (its first 64 KiB of RAM) for thumbv7em-none-eabihf, whose code uses the FPU.
set -euo pipefail
cd "$(dirname "$0")/.."

QEMU_PREFIX=/opt/raftlet-qemu
QEMU_LIBS="$QEMU_PREFIX/usr/lib/x86_64-linux-gnu:$QEMU_PREFIX/lib/x86_64-linux-gnu"

install() {
    local need=()
    [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library/core ] || need+=(rustc-web cargo-web rust-web-src)
    command -v arm-none-eabi-ld > /dev/null || need+=(binutils-arm-none-eabi)
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
    if ! LD_LIBRARY_PATH="$QEMU_LIBS" "$QEMU_PREFIX/usr/bin/qemu-system-arm" --version > /dev/null 2>&1; then
        local dl
        dl=$(mktemp -d)
        chmod 777 "$dl"
        apt-get update -qq
        (cd "$dl" && apt-get download -qq qemu-system-arm qemu-system-common qemu-system-data \
            libfdt1 libcapstone4 libpmem1 librdmacm1 libibverbs1 libslirp0 libvdeplug2 \
            libndctl6 libdaxctl1 libnl-3-200 libnl-route-3-200)
        mkdir -p "$QEMU_PREFIX"
        for f in "$dl"/*.deb; do dpkg -x "$f" "$QEMU_PREFIX"; done
        rm -rf "$dl"
    fi
    # Decodes the firmware's defmt frames on the host.
    command -v defmt-print > /dev/null || cargo install defmt-print --version 1.2.0 --locked --quiet
    /usr/bin/rustc --version
    LD_LIBRARY_PATH="$QEMU_LIBS" "$QEMU_PREFIX/usr/bin/qemu-system-arm" --version | head -1
}

# Debian's toolchain, selected for these commands only (rustup's proxies come first on PATH).
debian_cargo() {
    env -u RUSTUP_TOOLCHAIN PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
        /usr/bin/cargo "$@"
}

board_for() {
    case "$1" in
        thumbv7em-none-eabihf) echo netduinoplus2 ;;
        *) echo lm3s6965evb ;;
    esac
}

# The stack guard of firmware $1 (elf $2, QEMU board $3, target $4): built with its
# `overflow-test` feature, it must report that a deliberate overflow faulted before the
# statics were touched.
overflow_test() {
    local fw=$1 elf=$2 board=$3 target=$4 name out
    name=$(basename "$fw")
    echo "-- $name, $target: the stack guard (an overflow on purpose must fault before the statics)"
    (cd "$fw" && debian_cargo build --quiet --release --target "$target" -Zbuild-std=core --features overflow-test)
    out=$(LD_LIBRARY_PATH="$QEMU_LIBS" timeout 120 "$QEMU_PREFIX/usr/bin/qemu-system-arm" \
        -machine "$board" -nographic -semihosting-config enable=on,target=native \
        -kernel "$elf" 2>&1 > /dev/null) || { echo "$out"; echo "stack guard failed: $name on $target"; exit 1; }
    echo "$out" | grep -v "Timer with period zero"
    echo "$out" | grep -q "statics intact" || { echo "stack guard not shown"; exit 1; }
    # Leave the normal build in place for the size table.
    (cd "$fw" && debian_cargo build --quiet --release --target "$target" -Zbuild-std=core)
}

install
declare -a rows=()
for fw in transports/embassy/firmware/*/; do
    name=$(basename "$fw")
    for target in thumbv6m-none-eabi thumbv7em-none-eabihf; do
        echo "-- $name, $target: build"
        (cd "$fw" && debian_cargo build --quiet --release --target "$target" -Zbuild-std=core)
        elf="$fw/target/$target/release/raftlet-firmware-$name"
        board=$(board_for "$target")
        if grep -q '^# ci: qemu-cluster' "$fw/Cargo.toml"; then
            # A board of a three-board cluster: the relay runs three QEMU boards on the
            # thumbv6m build (the LM3S6965 is a Cortex-M3); the thumbv7em build is sized only.
            stack="?"
            if [ "$target" = thumbv6m-none-eabi ]; then
                echo "-- $name, $target: three QEMU lm3s6965evb boards on one bus (examples/qemu_cluster.rs)"
                out=$(LD_LIBRARY_PATH="$QEMU_LIBS" timeout 300 cargo run --quiet -p raftlet-embassy \
                    --example qemu_cluster -- "$QEMU_PREFIX/usr/bin/qemu-system-arm" "$elf" 2>&1) \
                    || { echo "$out"; echo "the QEMU cluster of $name failed"; exit 1; }
                echo "$out" | sed 's/^/   /'
                # Running and start-up peaks apart (building the runner by value is the deeper).
                running=$(echo "$out" | sed -n 's/.*running stack high-water \([0-9]*\) B.*/\1/p' | sort -n | tail -1)
                startup=$(echo "$out" | sed -n 's/.*start-up stack high-water \([0-9]*\) B.*/\1/p' | sort -n | tail -1)
                stack="${running:-?} running, ${startup:-?} at start-up"
                if grep -q '^overflow-test' "$fw/Cargo.toml"; then
                    overflow_test "$fw" "$elf" "$board" "$target"
                fi
            fi
            read -r text rodata data bss < <(arm-none-eabi-size -A "$elf" |
                awk '$1==".text"{t=$2} $1==".rodata"{r=$2} $1==".data"{d=$2} $1==".bss"{b=$2}
                     END{print t+0, r+0, d+0, b+0}')
            rows+=("$(printf '| %s | %s | %s | %s | %s | %s | %s |' "$name" "$target" "$text" "$rodata" "$((data + bss))" "${stack:-?}" "-")")
            continue
        fi
        echo "-- $name, $target: run on QEMU $board"
        # Semihosting stdout carries the defmt frames, stderr the firmware's plain-text report.
        frames=$(mktemp)
        # -icount shift=0: virtual time advances one nanosecond per instruction, so the
        # firmware can count the instructions it runs (through SysTick).
        out=$(LD_LIBRARY_PATH="$QEMU_LIBS" timeout 120 "$QEMU_PREFIX/usr/bin/qemu-system-arm" \
            -machine "$board" -nographic -semihosting-config enable=on,target=native \
            -icount shift=0 -kernel "$elf" 2>&1 > "$frames") || { echo "$out"; echo "firmware $name failed on $target"; exit 1; }
        echo "$out" | grep -v "Timer with period zero"
        echo "-- $name, $target: the core's defmt log, decoded on the host"
        log=$(defmt-print -e "$elf" < "$frames")
        rm -f "$frames"
        echo "$log" | sed 's/^/   /'
        echo "$log" | grep -q "became Leader" || { echo "no decoded defmt log of an election"; exit 1; }
        stack=$(echo "$out" | sed -n 's/.*stack high-water \([0-9]*\) B.*/\1/p' | tail -1)
        read -r text rodata data bss < <(arm-none-eabi-size -A "$elf" |
            awk '$1==".text"{t=$2} $1==".rodata"{r=$2} $1==".data"{d=$2} $1==".bss"{b=$2}
                 END{print t+0, r+0, d+0, b+0}')
        instr=$(echo "$out" | sed -n 's/.* \([0-9]*\) instructions per committed entry from the first proposal on.*/\1/p' | tail -1)
        rows+=("$(printf '| %s | %s | %s | %s | %s | %s | %s |' "$name" "$target" "$text" "$rodata" "$((data + bss))" "${stack:-?}" "${instr:-?}")")
        if grep -q '^overflow-test' "$fw/Cargo.toml"; then
            overflow_test "$fw" "$elf" "$board" "$target"
        fi
    done
done
echo
echo "| firmware | target | .text B | .rodata B | static RAM B | stack high-water B | instructions per entry |"
echo "|---|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
