# Builds the Lambda functions for `sam build` (every function has `BuildMethod: makefile`).
#
# SAM runs `make build-<LogicalId>` once per function with ARTIFACTS_DIR set. Every such target
# depends on one cargo lambda build of all seven binaries into one target directory, so the
# dependencies are compiled once for all functions (and not again on the next `sam build`); the
# target then copies its binary to ARTIFACTS_DIR/bootstrap. With `sam build --parallel` the six
# makes start together; the first one builds while the others wait for it.
#
#   LAMBDA_ARCH        arm64 (default, what the template deploys) or x86_64: must equal the
#                      template's Architecture parameter (sam local on an x86_64 machine).
#   LAMBDA_GLIBC       the glibc the binaries may need at most: 2.34 is Amazon Linux 2023's.
#   LAMBDA_PROFILE     the cargo profile (Cargo.toml's [profile.lambda]).
#   LAMBDA_TARGET_DIR  the cargo target directory (default target/lambda-build).
#
# `make lambda` builds without SAM; `make lambda-sizes` lists the binaries.

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
LAMBDA_ARCH ?= arm64
LAMBDA_GLIBC ?= 2.34
LAMBDA_PROFILE ?= lambda
LAMBDA_TARGET_DIR ?= $(ROOT)/target/lambda-build
# The cargo-lambda binary itself, not `cargo lambda`: cargo would set $CARGO to itself, and the
# shim must be the cargo that cargo lambda runs.
CARGO_LAMBDA ?= cargo-lambda lambda

ifeq ($(LAMBDA_ARCH),arm64)
TRIPLE := aarch64-unknown-linux-gnu
else ifeq ($(LAMBDA_ARCH),x86_64)
TRIPLE := x86_64-unknown-linux-gnu
else
$(error LAMBDA_ARCH must be arm64 or x86_64, not '$(LAMBDA_ARCH)')
endif

BINARIES := stop bounce store fanout api activate-ruleset forward
LAMBDA_DIR := $(LAMBDA_TARGET_DIR)/lambda/$(LAMBDA_ARCH)

.PHONY: lambda lambda-sizes
# $CARGO is scripts/cargo-shim/cargo: cargo lambda does not pass --ignore-rust-version on (see there).
# cargo lambda moves each binary out of cargo's output directory, so the concurrent makes of
# `sam build --parallel` take turns (flock); after the first, cargo finds everything fresh.
lambda:
	mkdir -p "$(LAMBDA_TARGET_DIR)"
	cd "$(ROOT)" && CARGO="$(ROOT)/scripts/cargo-shim/cargo" CARGO_TARGET_DIR="$(LAMBDA_TARGET_DIR)" flock "$(LAMBDA_TARGET_DIR)/.make-lambda.lock" \
	  $(CARGO_LAMBDA) build --locked \
	  --ignore-rust-version --profile $(LAMBDA_PROFILE) --target $(TRIPLE).$(LAMBDA_GLIBC) \
	  --lambda-dir "$(LAMBDA_DIR)" $(addprefix --bin ,$(BINARIES))

lambda-sizes: lambda
	@cd "$(LAMBDA_DIR)" && for b in $(BINARIES); do printf '%-18s %9d bytes\n' $$b $$(stat -c %s $$b/bootstrap); done

# build-<LogicalId>: <binary>
define function
.PHONY: build-$(1)
build-$(1): lambda
	@test -n "$$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)" >&2; exit 2; }
	cp "$(LAMBDA_DIR)/$(2)/bootstrap" "$$(ARTIFACTS_DIR)/bootstrap"
endef

$(eval $(call function,StopFunction,stop))
$(eval $(call function,BounceFunction,bounce))
$(eval $(call function,StoreFunction,store))
$(eval $(call function,FanoutFunction,fanout))
$(eval $(call function,ApiFunction,api))
$(eval $(call function,ActivateRuleSetFunction,activate-ruleset))
$(eval $(call function,ForwardFunction,forward))
