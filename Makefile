# asyncshim — see README.md.  `make`, `make test`, `make demo`, `make bench`,
# `make install PREFIX=/usr/local DESTDIR=`.
PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
BUILD := build

PKGS_SHIM := liburcu-bp liburcu-cds msgpack
PKGS_TOOL := msgpack libdw

WARN := -Wall -Wextra -Werror -Wshadow -Wno-missing-field-initializers
BASE_CFLAGS := -std=gnu11 -g -O2 $(WARN) -D_GNU_SOURCE
CFLAGS ?=
# libunwind: headers only; preload/stack.c dlopen()s it (see there why)
SHIM_CFLAGS = $(BASE_CFLAGS) -fPIC -fvisibility=hidden -fno-omit-frame-pointer \
	-Ipreload $(shell pkg-config --cflags $(PKGS_SHIM) libunwind 2>/dev/null) $(CFLAGS)
SHIM_LIBS = $(shell pkg-config --libs $(PKGS_SHIM) 2>/dev/null) -ldl -lpthread
TOOL_CFLAGS = $(BASE_CFLAGS) -Ipreload $(shell pkg-config --cflags $(PKGS_TOOL) 2>/dev/null) $(CFLAGS)
TOOL_LIBS = $(shell pkg-config --libs $(PKGS_TOOL) 2>/dev/null) -lm
SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

# format/: the trace's types and keys, the packer, the suppression parser:
# one copy shared by the library and the tools
FORMAT_SRC := $(wildcard format/*.c)
SHIM_SRC := $(wildcard preload/*.c hooks/*.c collector/*.c) $(FORMAT_SRC)
TOOL_SRC := $(wildcard tools/*.c) $(FORMAT_SRC)
HEADERS := $(wildcard preload/*.h tools/*.h collector/*.h format/*.h include/*.h)
SHIM_OBJ := $(SHIM_SRC:%.c=$(BUILD)/%.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/%.o)
PROGS := $(patsubst tests/progs/%.c,$(BUILD)/tests/%,$(wildcard tests/progs/*.c))
TEST_LIBS := $(patsubst tests/libs/%.c,$(BUILD)/tests/lib%.so,$(wildcard tests/libs/*.c))
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
# the examples again at both ends of optimisation, for the stack tests
EXAMPLES_LEVELS := $(foreach e,$(EXAMPLES),$(e)-O0 $(e)-O2)

.PHONY: all deps test demo bench install clean progs fuzz deps-test
all: $(BUILD)/libasyncshim.so $(BUILD)/asyncshim

# Installs missing Debian packages (only when pkg-config cannot find them).
deps:
	@./scripts/deps.sh build

$(BUILD)/%.o: %.c $(HEADERS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(if $(filter tools/%,$<),$(TOOL_CFLAGS),$(SHIM_CFLAGS)) -c $< -o $@

$(BUILD)/libasyncshim.so: $(SHIM_OBJ)
	$(CC) -shared -o $@ $^ $(SHIM_LIBS) -Wl,-z,now -Wl,-z,defs

$(BUILD)/asyncshim: $(TOOL_OBJ)
	$(CC) -o $@ $^ $(TOOL_LIBS)

# The tools again with AddressSanitizer + UBSan: the tests feed them bad input.
$(BUILD)/asan/asyncshim: $(TOOL_SRC) $(HEADERS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(TOOL_CFLAGS) -O1 $(SAN) -o $@ $(TOOL_SRC) $(TOOL_LIBS)

# The HTML report's page (tools/html_template.html) as a C array, for tools/html.c.
HTML_PAGE := $(BUILD)/gen/html_template.h
TOOL_CFLAGS += -I$(BUILD)/gen
$(HTML_PAGE): tools/html_template.html | deps
	@mkdir -p $(dir $@)
	cd tools && xxd -i html_template.html > $(CURDIR)/$@.tmp
	mv $@.tmp $@
$(BUILD)/tools/html.o $(BUILD)/asan/asyncshim $(BUILD)/fuzz/fuzz_trace: $(HTML_PAGE)

# -Iinclude: programs that mark spans with include/asyncshim.h (tests/progs/spans.c)
$(BUILD)/tests/%: tests/progs/%.c include/asyncshim.h | deps
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g -O0 -Wall -Wextra -Werror -Iinclude -o $@ $< -lpthread -lm

$(BUILD)/tests/%-O2: tests/progs/%.c include/asyncshim.h | deps
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g -O2 -fomit-frame-pointer -Wall -Wextra -Werror -Iinclude -o $@ $< -lpthread -lm

$(BUILD)/examples/%: examples/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g -O2 -Wall -Wextra -Werror -o $@ $< -lpthread

$(BUILD)/examples/%-O0: examples/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g -O0 -Wall -Wextra -Werror -o $@ $< -lpthread

$(BUILD)/examples/%-O2: examples/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g -O2 -fomit-frame-pointer -Wall -Wextra -Werror -o $@ $< -lpthread

# small shared libraries the tests load (preloaded or dlopen'd)
$(BUILD)/tests/lib%.so: tests/libs/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g -O0 -fPIC -shared -Wall -Wextra -Werror -o $@ $<

progs: $(PROGS) $(EXAMPLES) $(EXAMPLES_LEVELS) $(TEST_LIBS)

# Task tests: programs that link libuv/libevent (their -dev packages are test
# dependencies).  They export their symbols, so the shim names callbacks
# with dladdr; coro_tasks (generic rule) does not: the tools' symbolizer
# names its functions.
TASK_PROG_CFLAGS := -std=gnu11 -g -O0 -Wall -Wextra -Werror -rdynamic
deps-test:
	@./scripts/deps.sh test
$(BUILD)/tests/uv_tasks: tests/progs/uv_tasks.c | deps-test
	@mkdir -p $(dir $@)
	$(CC) $(TASK_PROG_CFLAGS) $$(pkg-config --cflags libuv) -o $@ $< $$(pkg-config --libs libuv) -lpthread -lm
$(BUILD)/tests/uv_again: tests/progs/uv_again.c | deps-test
	@mkdir -p $(dir $@)
	$(CC) $(TASK_PROG_CFLAGS) $$(pkg-config --cflags libuv) -o $@ $< $$(pkg-config --libs libuv) -lpthread -lm
$(BUILD)/tests/event_slow: tests/progs/event_slow.c | deps-test
	@mkdir -p $(dir $@)
	$(CC) $(TASK_PROG_CFLAGS) $$(pkg-config --cflags libevent) -o $@ $< $$(pkg-config --libs libevent) -lpthread -lm
$(BUILD)/tests/event_finalize: tests/progs/event_finalize.c | deps-test
	@mkdir -p $(dir $@)
	$(CC) $(TASK_PROG_CFLAGS) $$(pkg-config --cflags libevent) -o $@ $< $$(pkg-config --libs libevent) -lpthread -lm
$(BUILD)/bench/tasks: bench/tasks.c | deps-test
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g -O2 -Wall -Wextra -Werror $$(pkg-config --cflags libuv libevent) -o $@ $< \
		$$(pkg-config --libs libuv libevent) -lpthread -lm

# The shim with ThreadSanitizer, for the collector's concurrency test
# (LD_PRELOAD it before the TSan runtime; see tests/test_tsan.py).  Only this
# test build inlines liburcu's read side (_LGPL_SOURCE), so TSan sees the
# RCU list's loads and stores as the atomics they are.
$(BUILD)/tsan/libasyncshim.so: $(SHIM_SRC) $(HEADERS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(SHIM_CFLAGS) -D_LGPL_SOURCE -O1 -fsanitize=thread -shared -o $@ $(SHIM_SRC) $(SHIM_LIBS)

# The shim with UBSan, every finding fatal (tests/test_sanitizers.py runs
# some tests' programs under it with UBSAN_OPTIONS=log_path=..., so a
# report from any thread, the shim's own included, is kept and fails).
$(BUILD)/ubsan/libasyncshim.so: $(SHIM_SRC) $(HEADERS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(SHIM_CFLAGS) -O1 -fsanitize=undefined -fno-sanitize-recover=undefined -shared -o $@ $(SHIM_SRC) \
		$(SHIM_LIBS)

# libFuzzer harness for the trace reader (clang); `make fuzz` runs it for
# FUZZ_SECONDS (default 600), `make test` for about a minute.
FUZZ_SECONDS ?= 600
FUZZ_SRC := tools/trace.c tools/hist.c tools/json.c tools/progress.c tools/tasks.c tools/stacks.c tools/symbolize.c \
	tools/spans.c tools/findings.c $(FORMAT_SRC)
$(BUILD)/fuzz/fuzz_trace: tests/fuzz/fuzz_trace.c $(TOOL_SRC) $(HEADERS) | deps
	@mkdir -p $(dir $@)
	clang $(TOOL_CFLAGS) -Wno-unused-command-line-argument -O1 -fsanitize=fuzzer,address,undefined \
		-o $@ tests/fuzz/fuzz_trace.c $(FUZZ_SRC) $(TOOL_LIBS)

fuzz: all progs $(BUILD)/fuzz/fuzz_trace
	FUZZ_SECONDS=$(FUZZ_SECONDS) /usr/bin/python3 -m pytest -q tests/test_fuzz.py

test: all progs $(BUILD)/asan/asyncshim $(BUILD)/fuzz/fuzz_trace $(BUILD)/tsan/libasyncshim.so $(BUILD)/ubsan/libasyncshim.so \
	$(BUILD)/bench/bigtrace
	@./scripts/deps.sh test
	/usr/bin/python3 -m pytest -q -p no:cacheprovider tests

demo: all $(BUILD)/examples/loop
	@./scripts/demo.sh

# The benchmark suite (bench/run.sh, docs/performance.md): its programs at
# -O2, and the stub library its "hook alone" rows preload after the shim.
BENCH_PROGS := $(BUILD)/bench/calls $(BUILD)/bench/collector $(BUILD)/bench/memory $(BUILD)/bench/probe $(BUILD)/bench/stacks
BENCH_BIN := $(BENCH_PROGS) $(BUILD)/bench/bigtrace $(BUILD)/bench/libstub.so $(BUILD)/bench/libcapture.so
# preload/stack.c alone, so bench/stacks.py can time the shim's stack capture
$(BUILD)/bench/libcapture.so: bench/capture_lib.c preload/stack.c $(HEADERS) | deps
	@mkdir -p $(dir $@)
	$(CC) $(SHIM_CFLAGS) -shared -o $@ bench/capture_lib.c preload/stack.c -ldl
$(BENCH_PROGS): $(BUILD)/bench/%: bench/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -o $@ $< -ldl -lpthread
$(BUILD)/bench/bigtrace: bench/bigtrace.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(TOOL_CFLAGS) -o $@ $< $(TOOL_LIBS)
$(BUILD)/bench/libstub.so: bench/libstub.c | deps
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -fPIC -shared -Wl,-soname,libstub.so \
		-o $@ $< -ldl

# bench/spans.c marks spans with include/asyncshim.h (bench/spans.py)
$(BUILD)/bench/spans: bench/spans.c include/asyncshim.h preload/ctl_proto.h | deps
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -g -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude -o $@ $< -ldl -lpthread

bench: all progs $(BUILD)/bench/tasks $(BUILD)/bench/spans $(BENCH_BIN)
	@./scripts/deps.sh bench
	@./bench/run.sh

# The span API header and its pkg-config file (programs need no library:
# the header finds the shim at run time; -ldl only for glibc < 2.34).
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(BUILD)/asyncshim $(DESTDIR)$(PREFIX)/bin/asyncshim
	install -m 0755 $(BUILD)/libasyncshim.so $(DESTDIR)$(PREFIX)/lib/libasyncshim.so
	install -m 0644 include/asyncshim.h $(DESTDIR)$(PREFIX)/include/asyncshim.h
	sed -e 's|@PREFIX@|$(PREFIX)|' asyncshim.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/asyncshim.pc
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/asyncshim.pc

clean:
	rm -rf $(BUILD)
