# tierckpt - one non-recursive Makefile.  Outputs go under build/ only.
#
#   make                 build/libtierckpt.so and build/tierckpt
#   make test            unit tests (Criterion) then integration tests (pytest, real programs)
#   make test-unit       unit tests only
#   make test-asan       the same suites with ASan+UBSan (build/asan/)
#   make check-exports   the .so exports exactly the interposed libc names
#   make bench           benchmarks (ratios against a baseline measured in the same run)
#   make demo            the main job: a real PyTorch DCP run under the shim
#   make install PREFIX=/usr/local
#
# V=1 shows the commands.

PREFIX  ?= /usr/local
BUILD   ?= build
CC      ?= cc
PYTHON  ?= /usr/bin/python3

Q := $(if $(V),,@)
say = $(if $(V),,@printf '  %-6s %s\n' $(1) $(2);)

PKGS      := glib-2.0
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SAN_FLAGS ?=
OPTFLAGS ?= -O2 -g
CFLAGS  += $(OPTFLAGS) -std=gnu11 -D_GNU_SOURCE -U_FORTIFY_SOURCE -Wall -Wextra -Werror -fPIC -fvisibility=hidden \
           -fno-strict-aliasing -I. $(PKG_CFLAGS) $(SAN_FLAGS) -MMD -MP
LDFLAGS += $(SAN_FLAGS)

# --- sources (explicit lists) --------------------------------------------------------------------
CONFIG_SRCS   := config/cfg.c config/log.c
TIERING_SRCS  := tiering/tier_step.c
INTERPOSE_LIB := interpose/ip_path.c
# the wrappers and their core: only in the .so
SHIM_SRCS     := interpose/ip_core.c interpose/ip_wrap_open.c interpose/ip_wrap_meta.c \
                 interpose/ip_wrap_dir.c interpose/ip_wrap_proc.c
CLI_SRCS      := tools/tierckpt.c
# S3 signing: not in the shim (the uploader will load it on demand), only in the unit tests
S3_SRCS       := tiering/s3_sigv4.c
S3_CLIENT_SRCS := tiering/s3_client.c
S3_TOOL_SRCS  := tools/s3_tool.c
# the uploader: its own library, loaded by the shim only in the process that leads the uploads
UPLOAD_SRCS   := tiering/tier_upload.c $(S3_SRCS) $(S3_CLIENT_SRCS)
UNIT_SRCS     := tests/unit/test_path.c tests/unit/test_cfg.c tests/unit/test_sigv4.c
BENCH_SRCS    := tools/bench_files.c
START_SRCS    := tools/bench_start.c

COMMON_SRCS := $(CONFIG_SRCS) $(TIERING_SRCS) $(INTERPOSE_LIB)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB   := $(BUILD)/libtierckpt.so
CLI   := $(BUILD)/tierckpt
UNIT  := $(BUILD)/test_unit
BENCH := $(BUILD)/bench_files
S3_TOOL := $(BUILD)/tierckpt-s3
UPLIB := $(BUILD)/libtierckpt-upload.so
UPLIB_MAP := $(BUILD)/libtierckpt-upload.map
SYMS  := interpose/ip_syms.def
VERSCRIPT := $(BUILD)/libtierckpt.map

.PHONY: all test test-unit test-integration test-asan check-exports bench demo install clean deps

# tierckpt-s3: the S3 client on the command line, for the tests (not installed)
all: $(LIB) $(UPLIB) $(CLI) $(S3_TOOL)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# The version script is generated from the one list of wrapped symbols: everything else is local.
$(VERSCRIPT): $(SYMS)
	@mkdir -p $(dir $@)
	$(call say,GEN,$@)
	$(Q){ echo '{ global:'; sed -n 's/^IP_SYM([^,]*, *\([A-Za-z0-9_]*\),.*/  \1;/p' $(SYMS); \
	      echo '  local: *; };'; } > $@

$(LIB): $(call obj,$(COMMON_SRCS) $(SHIM_SRCS)) $(VERSCRIPT)
	$(call say,LD,$@)
	$(Q)$(CC) -shared -o $@ $(call obj,$(COMMON_SRCS) $(SHIM_SRCS)) $(LDFLAGS) \
	    -Wl,--version-script=$(VERSCRIPT) -Wl,-z,nodelete -Wl,-z,noseparate-code -Wl,--as-needed -ldl -pthread

$(UPLIB_MAP):
	@mkdir -p $(dir $@)
	$(Q)echo '{ global: tierckpt_upload_main; local: *; };' > $@

$(UPLIB): $(call obj,$(COMMON_SRCS) $(UPLOAD_SRCS)) $(UPLIB_MAP)
	$(call say,LD,$@)
	$(Q)$(CC) -shared -o $@ $(call obj,$(COMMON_SRCS) $(UPLOAD_SRCS)) $(LDFLAGS) \
	    -Wl,--version-script=$(UPLIB_MAP) -Wl,-z,nodelete $(PKG_LIBS) -lcurl -lcrypto -pthread

$(CLI): $(call obj,$(COMMON_SRCS) $(UPLOAD_SRCS) $(CLI_SRCS))
	$(call say,LD,$@)
	$(Q)$(CC) -o $@ $^ $(LDFLAGS) $(PKG_LIBS) -lcurl -lcrypto -pthread

$(UNIT): $(call obj,$(COMMON_SRCS) $(S3_SRCS) $(UNIT_SRCS))
	$(call say,LD,$@)
	$(Q)$(CC) -o $@ $^ $(LDFLAGS) $(PKG_LIBS) -lcrypto -lcriterion -pthread

$(S3_TOOL): $(call obj,$(S3_SRCS) $(S3_CLIENT_SRCS) $(S3_TOOL_SRCS))
	$(call say,LD,$@)
	$(Q)$(CC) -o $@ $^ $(LDFLAGS) -lcurl -lcrypto -pthread

$(BUILD)/bench_start: $(call obj,$(START_SRCS))
	$(call say,LD,$@)
	$(Q)$(CC) -o $@ $^ $(LDFLAGS)

$(BENCH): $(call obj,$(BENCH_SRCS))
	$(call say,LD,$@)
	$(Q)$(CC) -o $@ $^ $(LDFLAGS)

# --- checks and tests ------------------------------------------------------------------------------
check-exports: $(LIB)
	$(Q)tools/check-exports.sh $(LIB) $(SYMS)

test-unit: $(UNIT)
	$(Q)$(UNIT) --jobs 2

test-integration: all check-exports
	$(Q)cd tests/integration && TIERCKPT_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -p no:cacheprovider .

# deps first, in its own step, so that pkg-config sees what it installed
test: deps
	$(Q)$(MAKE) --no-print-directory test-unit
	$(Q)$(MAKE) --no-print-directory test-integration

test-asan: deps
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan OPTFLAGS='-O1 -g -fno-omit-frame-pointer' \
	    SAN_FLAGS='-fsanitize=address,undefined -fno-sanitize-recover=undefined' test-unit
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan OPTFLAGS='-O1 -g -fno-omit-frame-pointer' \
	    SAN_FLAGS='-fsanitize=address,undefined -fno-sanitize-recover=undefined' all
	$(Q)cd tests/integration && TIERCKPT_BUILD=$(abspath build/asan) TIERCKPT_TEST_ASAN=1 \
	    $(PYTHON) -m pytest -q -p no:cacheprovider .

bench: all $(BENCH) $(BUILD)/bench_start
	$(Q)tools/bench.sh $(abspath $(BUILD))
	$(Q)tools/bench_upload.sh $(abspath $(BUILD))

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tools/demo.sh $(abspath $(BUILD))

deps:
	$(Q)tools/install-deps.sh

install: $(LIB) $(UPLIB) $(CLI)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/tierckpt
	install -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/tierckpt
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/tierckpt/libtierckpt.so
	install -m 0755 $(UPLIB) $(DESTDIR)$(PREFIX)/lib/tierckpt/libtierckpt-upload.so

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
