# Bulkhead: one Makefile drives everything, with the Microkit ecosystem's
# variables. `make run` and `make test` need no SDK.
#
#   make run            check, report and draw the reference system (host board)
#   make test           every test that needs no SDK
#   make fuzz           run every fuzz target for FUZZ_SECONDS each (nightly)
#   make bench          benchmarks (criterion)
#   make image          pack an image with $(MICROKIT_SDK)'s own microkit tool
#   make qemu           boot that image under QEMU
#   make guest-images   Linux guest Image + initramfs from Debian packages (build/guest/)

MICROKIT_BOARD ?= qemu_virt_aarch64
MICROKIT_CONFIG ?= debug
SYSTEM ?= system/automotive/host.system
FUZZ_SECONDS ?= 60
CARGO ?= cargo
BULKHEAD = target/release/bulkhead

# PD crates that must build for aarch64-unknown-none (no_std).
PD_CRATES = bulkhead-config bulkhead-boards bulkhead-sel4-abi bulkhead-hello-pd bulkhead-ring bulkhead-can-frame bulkhead-virtio bulkhead-runtime bulkhead-example-pds bulkhead-virt-can bulkhead-virt-blk-pd bulkhead-virt-can-pd bulkhead-virtio-can-driver bulkhead-can-protocol bulkhead-vmm-aarch64 drv-imx-uart drv-flexcan drv-pci-ecam drv-imx-usdhc drv-ctucanfd drv-mmio drv-virtio-blk-mmio bulkhead-sel4-can-pds bulkhead-vmm-sel4 bulkhead-guests-aarch64 drv-can-driver-hop bulkhead-sel4-blk-pds bulkhead-sel4-console-pds bulkhead-vmm-host

.PHONY: all setup build run test lint fmt pd-build check-systems fuzz bench image qemu clean

all: build

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --release -p bulkhead -p bulkhead-example-pds

# `make run`: what the tools say about the reference system (valid on each
# board, who may touch what, a drawing clustered by safety domain, the
# isolation proof), then an example system running on the host board.
run: build
	@mkdir -p build
	@for b in host qemu_virt_aarch64 imx8mp_evk imx8mm_evk; do \
	    $(BULKHEAD) check system/automotive/$$b.system --board $$b || exit 1; \
	done
	$(BULKHEAD) report $(SYSTEM)
	$(BULKHEAD) graph system/automotive/imx8mp_evk.system --policy system/automotive/policy.toml -o build/automotive.svg
	$(BULKHEAD) prove system/automotive/imx8mp_evk.system --policy system/automotive/policy.toml
	@echo "drawing of the imx8mp_evk system: build/automotive.svg"
	$(BULKHEAD) run system/examples/pingpong.system --timeout 20

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

pd-build:
	$(CARGO) build --target aarch64-unknown-none $(addprefix -p ,$(PD_CRATES))

check-systems: build
	scripts/check-systems.sh $(BULKHEAD)

# Model-check the Promela protocol models (proofs/README.md); needs spin.
.PHONY: proofs
proofs: setup
	proofs/check.sh

test: setup lint pd-build check-systems proofs separation
	$(CARGO) test --workspace

# The safety-separation checklist on the host board (tools/separation/README.md):
# on the stand-in system, 2 runs x 1000 round trips per timing condition,
# then every item again on builds with one protection removed each, where it
# must FAIL (and which `bulkhead check` must refuse); then on the reference
# system with the real PD programs, and C4 on the CAN test system (the
# reference system's CAN filters share no id). About 3 min on 2 cores.
# Reports: build/separation/{stand-in,reference,can-fanout}/{junit.xml,report.html}.
PROTECTION_REMOVED = seccomp ro-maps priorities wakeups stack-guard
SEP_TARGET = $${CARGO_TARGET_DIR:-target}
SEP_REFERENCE_PDS = bulkhead-vmm-host bulkhead-virt-console-pd bulkhead-host-serial bulkhead-virt-blk-pd drv-host-blk-file bulkhead-virt-can-pd drv-host-can-bus
SEP_GUESTS = can_cluster can_infotainment blk_oob
.PHONY: separation
separation: setup
	$(CARGO) build -p bulkhead -p bulkhead-separation-pds $(addprefix -p ,$(SEP_REFERENCE_PDS))
	$(CARGO) build -p bulkhead-test-guests $(addprefix --bin ,$(SEP_GUESTS))
	@for v in $(PROTECTION_REMOVED); do \
	    $(CARGO) build -q -p bulkhead-separation-pds --features protection-removed-$$v --target-dir $(SEP_TARGET)/protection-removed-$$v || exit 1; \
	done
	@for v in can-whitelist can-fanout; do \
	    $(CARGO) build -q -p bulkhead-virt-can-pd --features protection-removed-$$v --target-dir $(SEP_TARGET)/protection-removed-$$v || exit 1; \
	done
	$(SEP_TARGET)/debug/bulkhead test-separation tests/separation/systems/automotive-sep.system --policy tests/separation/systems/policy.toml --out build/separation/stand-in --samples 2 \
	    $(foreach v,$(PROTECTION_REMOVED),--protection-removed $(v)=$(SEP_TARGET)/protection-removed-$(v)/debug)
	$(SEP_TARGET)/debug/bulkhead test-separation system/automotive/host.system --policy system/automotive/policy.toml --out build/separation/reference --samples 2 \
	    --protection-removed can-whitelist=$(SEP_TARGET)/protection-removed-can-whitelist/debug
	$(SEP_TARGET)/debug/bulkhead test-separation tests/guests/systems/can/host.system --only C4 --out build/separation/can-fanout \
	    --protection-removed can-fanout=$(SEP_TARGET)/protection-removed-can-fanout/debug

fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

bench: setup
	$(CARGO) bench --workspace

# Debian's arm64 kernel and a busybox initramfs (guest/README.md); cached,
# so a second run only checks the package versions.
.PHONY: guest-images
guest-images:
	scripts/guest-image.sh

image qemu:
	@scripts/sdk.sh $@ "$(MICROKIT_SDK)" "$(MICROKIT_BOARD)" "$(MICROKIT_CONFIG)" "$(SYSTEM)"

clean:
	$(CARGO) clean
