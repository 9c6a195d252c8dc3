# Builds the Lambda functions for `sam build` (every function has `BuildMethod: makefile`).
#
# SAM runs `make build-<LogicalId>` once per function with ARTIFACTS_DIR set. Every such target
# depends on one cargo lambda build of all the binaries into one target directory, so the
# dependencies are compiled once for all functions (and not again on the next `sam build`); the
# target then copies its binary to ARTIFACTS_DIR/bootstrap. With `sam build --parallel` the seven
# makes start together; the first one builds while the others wait for it.
#
# The functions come from template.yaml alone (scripts/template-functions.awk): each
# AWS::Serverless::Function's logical id and its Metadata.BuildProperties.Binary, so a new
# function needs no line here.
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

# LogicalId:binary, one word per function.
FUNCTIONS := $(shell awk -f "$(ROOT)/scripts/template-functions.awk" "$(ROOT)/template.yaml")
ifneq ($(.SHELLSTATUS),0)
$(error cannot list the functions of $(ROOT)/template.yaml)
endif
BINARIES := $(foreach f,$(FUNCTIONS),$(word 2,$(subst :, ,$(f))))
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

# build-<LogicalId>: the function's binary as ARTIFACTS_DIR/bootstrap. A pattern rule (not
# .PHONY, which would skip it) so that any function of the template has its target.
build-%: lambda
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)" >&2; exit 2; }
	@test -n "$(call binary_of,$*)" || { echo "template.yaml has no function $* (with a Metadata.BuildProperties.Binary)" >&2; exit 2; }
	cp "$(LAMBDA_DIR)/$(call binary_of,$*)/bootstrap" "$(ARTIFACTS_DIR)/bootstrap"

binary_of = $(word 2,$(subst :, ,$(filter $(1):%,$(FUNCTIONS))))
