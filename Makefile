# twine -- one non-recursive Makefile.
#
#   make                 libraries (static + shared), examples, pkg-config files
#   make run             build and start the bundled demo server
#   make check           every test on every backend, plus ASan+UBSan and TSan runs
#   make bench           reactor and echo-server benchmarks beside libuv, libevent, raw epoll, Twisted
#   make install         PREFIX=/usr/local DESTDIR= (headers flattened into include/twine)
#   make clean
#
# Everything is built under build/<variant>/: rel (the libraries you install:
# -O2 -DNDEBUG), dbg (tests with assertions), asan (ASan+UBSan), tsan.

.DEFAULT_GOAL := all

VERSION     := 0.1.0
SOVERSION   := 0
PREFIX      ?= /usr/local
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
DESTDIR     ?=
CC          ?= cc
CFLAGS      ?= -O2 -g
B           := build
OS          := $(shell uname -s)

WARN   := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
          -Wno-unused-parameter
BASE   := $(WARN) -fPIC -pthread -Icore -Itransports -Iprotocols

# Per-variant flags.  User CFLAGS apply to the release build only.
FLAGS_rel  := $(CFLAGS) -DNDEBUG
FLAGS_dbg  := -O1 -g
FLAGS_asan := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined
FLAGS_tsan := -O1 -g -fsanitize=thread
VARIANTS   := rel dbg asan tsan

CORE_SRC := $(wildcard core/*.c transports/*.c protocols/*.c)
PUBLIC_H := $(wildcard core/twine.h core/tw_*.h transports/tw_*.h protocols/tw_*.h)

# Backends this platform has; kqueue is tested on Linux through tests/kqueue.
ifeq ($(OS),Linux)
  BACKENDS        := select poll epoll
  DEFAULT_BACKEND := epoll
  TEST_BACKENDS   := select poll epoll kqueue
else ifneq ($(filter Darwin FreeBSD OpenBSD NetBSD DragonFly,$(OS)),)
  BACKENDS        := select poll kqueue
  DEFAULT_BACKEND := kqueue
  TEST_BACKENDS   := select poll kqueue
else
  BACKENDS        := select poll
  DEFAULT_BACKEND := poll
  TEST_BACKENDS   := select poll
endif

# Every tests/test_*.c is a test program, run once per backend (except the
# backend-independent ones in TESTS_ONCE).
TESTS_ONCE   := test_error test_endpoint test_thread_queue
TESTS        := $(filter-out $(TESTS_ONCE),$(basename $(notdir $(wildcard tests/test_*.c))))
TEST_SUPPORT := $(basename $(notdir $(filter-out tests/test_%,$(wildcard tests/*.c))))
TSAN_TESTS   := test_calls test_signal test_reactor test_threadpool
# Threaded but backend-independent (or slow under TSan): the default backend only.
TSAN_ONCE    := test_thread_queue test_process
EXAMPLES     := $(basename $(notdir $(wildcard examples/*.c)))

# ---- per-variant build rules ------------------------------------------------

define test_link
$(B)/$(1)/test/%-$(2): $(B)/$(1)/obj/tests/%.o $(TEST_SUPPORT:%=$(B)/$(1)/obj/tests/%.o) \
		$(B)/$(1)/lib/libtwine.a $(3)
	@mkdir -p $$(@D)
	$$(CC) $$(BASE) $$(FLAGS_$(1)) -o $$@ $$(filter %.o,$$^) $(B)/$(1)/lib/libtwine.a $(3) \
		$$(CMOCKA_LIBS) -lm
endef

define variant
$(B)/$(1)/obj/%.o: %.c
	@mkdir -p $$(@D)
	$$(CC) $$(BASE) $$(FLAGS_$(1)) -MMD -MP -c $$< -o $$@

$(B)/$(1)/lib/libtwine.a: $(CORE_SRC:%.c=$(B)/$(1)/obj/%.o)
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^

$(B)/$(1)/lib/libtwine-%.a: $(B)/$(1)/obj/reactors/%.o
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^

$(B)/$(1)/lib/libtwine-default.a: $(B)/$(1)/obj/reactors/$(DEFAULT_BACKEND).o
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^

# kqueue compiled against the emulation in tests/kqueue (Linux only; test use).
$(B)/$(1)/obj/kqemu/kqueue.o: reactors/kqueue.c
	@mkdir -p $$(@D)
	$$(CC) $$(BASE) $$(FLAGS_$(1)) -Itests/kqueue -MMD -MP -c $$< -o $$@
$(B)/$(1)/obj/kqemu/kqueue_emu.o: tests/kqueue/kqueue_emu.c
	@mkdir -p $$(@D)
	$$(CC) $$(BASE) $$(FLAGS_$(1)) -Itests/kqueue -MMD -MP -c $$< -o $$@
$(B)/$(1)/test/libtwine-kqueue-emu.a: $(B)/$(1)/obj/kqemu/kqueue.o $(B)/$(1)/obj/kqemu/kqueue_emu.o
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^

# Test programs: one link per backend, against the archives, as a user links.
$(foreach b,$(BACKENDS),$(eval $(call test_link,$(1),$(b),$(B)/$(1)/lib/libtwine-$(b).a)))
$(if $(filter kqueue,$(BACKENDS)),,$(eval $(call test_link,$(1),kqueue,$(B)/$(1)/test/libtwine-kqueue-emu.a)))
endef
$(foreach v,$(VARIANTS),$(eval $(call variant,$(v))))

CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

# ---- release libraries, shared objects, pkg-config ---------------------------

REL      := $(B)/rel
LIBNAMES := twine $(addprefix twine-,$(BACKENDS) default)
STATIC   := $(LIBNAMES:%=$(REL)/lib/lib%.a)
SHARED   := $(LIBNAMES:%=$(REL)/lib/lib%.so.$(VERSION))
PCFILES  := $(LIBNAMES:%=$(REL)/pkgconfig/%.pc)

all: deps-build
	@$(MAKE) --no-print-directory libs

libs: $(STATIC) $(SHARED) $(PCFILES) $(EXAMPLES:%=$(REL)/examples/%)

$(REL)/lib/libtwine.so.$(VERSION): $(CORE_SRC:%.c=$(REL)/obj/%.o)
	@mkdir -p $(@D)
	$(CC) -shared -pthread -Wl,-soname,libtwine.so.$(SOVERSION) -o $@ $^
	ln -sf $(notdir $@) $(@D)/libtwine.so.$(SOVERSION)
	ln -sf $(notdir $@) $(@D)/libtwine.so

$(REL)/lib/libtwine-default.so.$(VERSION): $(REL)/obj/reactors/$(DEFAULT_BACKEND).o
	@mkdir -p $(@D)
	$(CC) -shared -Wl,-soname,libtwine-default.so.$(SOVERSION) -o $@ $^
	ln -sf $(notdir $@) $(@D)/libtwine-default.so.$(SOVERSION)
	ln -sf $(notdir $@) $(@D)/libtwine-default.so

$(REL)/lib/libtwine-%.so.$(VERSION): $(REL)/obj/reactors/%.o
	@mkdir -p $(@D)
	$(CC) -shared -Wl,-soname,libtwine-$*.so.$(SOVERSION) -o $@ $^
	ln -sf $(notdir $@) $(@D)/libtwine-$*.so.$(SOVERSION)
	ln -sf $(notdir $@) $(@D)/libtwine-$*.so

# The .pc files record PREFIX: rebuild them whenever it changes.
PC_DIRS := $(PREFIX) $(LIBDIR) $(INCLUDEDIR)
$(shell mkdir -p $(REL)/pkgconfig; echo '$(PC_DIRS)' | cmp -s - $(REL)/pkgconfig/.dirs || \
	echo '$(PC_DIRS)' > $(REL)/pkgconfig/.dirs)

$(REL)/pkgconfig/%.pc: Makefile $(REL)/pkgconfig/.dirs
	@mkdir -p $(@D)
	@backend=$(patsubst twine-%,%,$(filter twine-%,$*)); \
	libs="-ltwine -ltwine-$${backend:-default}"; \
	desc="Twisted-style networking framework for C"; \
	[ -n "$$backend" ] && desc="$$desc ($$backend reactor backend)"; \
	printf '%s\n' "prefix=$(PREFIX)" "libdir=$(LIBDIR)" "includedir=$(INCLUDEDIR)" "" \
	  "Name: $*" "Description: $$desc" "Version: $(VERSION)" \
	  "Cflags: -I\$${includedir}/twine" "Libs: -L\$${libdir} $$libs" \
	  "Libs.private: -pthread" > $@

# ---- examples -----------------------------------------------------------------

$(REL)/examples/%: examples/%.c $(REL)/lib/libtwine.a $(REL)/lib/libtwine-default.a
	@mkdir -p $(@D)
	$(CC) $(BASE) $(FLAGS_rel) -o $@ $< $(REL)/lib/libtwine.a $(REL)/lib/libtwine-default.a -lm

$(B)/asan/examples/%: examples/%.c $(B)/asan/lib/libtwine.a $(B)/asan/lib/libtwine-$(DEFAULT_BACKEND).a
	@mkdir -p $(@D)
	$(CC) $(BASE) $(FLAGS_asan) -o $@ $< $(B)/asan/lib/libtwine.a \
		$(B)/asan/lib/libtwine-$(DEFAULT_BACKEND).a

# tests/interop's twine peer (ASan+UBSan), beside the examples that
# tests/interop/run.sh $(B)/asan drives.
$(B)/asan/interop/twine_peer: tests/interop/twine_peer.c $(B)/asan/lib/libtwine.a \
		$(B)/asan/lib/libtwine-$(DEFAULT_BACKEND).a
	@mkdir -p $(@D)
	$(CC) $(BASE) $(FLAGS_asan) -o $@ $< $(B)/asan/lib/libtwine.a \
		$(B)/asan/lib/libtwine-$(DEFAULT_BACKEND).a

run: all
	@echo "twine: starting examples/chat-server on tcp:8000:interface=127.0.0.1" \
	  "($(DEFAULT_BACKEND) backend; Ctrl-C stops it; join with: nc 127.0.0.1 8000)"
	$(REL)/examples/chat-server tcp:8000:interface=127.0.0.1

# ---- tests --------------------------------------------------------------------

test-programs = $(foreach t,$(TESTS),$(foreach b,$(TEST_BACKENDS),$(B)/$(1)/test/$(t)-$(b))) \
                $(foreach t,$(TESTS_ONCE),$(B)/$(1)/test/$(t)-$(DEFAULT_BACKEND))
TSAN_PROGS   := $(foreach t,$(TSAN_TESTS),$(foreach b,$(TEST_BACKENDS),$(B)/tsan/test/$(t)-$(b))) \
                $(foreach t,$(TSAN_ONCE),$(B)/tsan/test/$(t)-$(DEFAULT_BACKEND))
TIMEOUT      ?= 300

# Dependencies first (they may be installed by .ci/deps), then the build.
check: deps-check
	@$(MAKE) --no-print-directory check-run

check-run: libs $(call test-programs,dbg) $(call test-programs,asan) $(TSAN_PROGS) \
		$(EXAMPLES:%=$(B)/asan/examples/%) $(B)/asan/interop/twine_peer
	@tests/run-tests.sh $(TIMEOUT) $(call test-programs,dbg)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  tests/run-tests.sh $(TIMEOUT) $(call test-programs,asan)
	@TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  tests/run-tests.sh $(TIMEOUT) $(TSAN_PROGS)
	@tests/link/run.sh "$(CC)" $(REL) "$(BACKENDS)" $(DEFAULT_BACKEND)
	@tests/examples/run.sh $(B)/asan/examples
	@TWINE_INTEROP_STRICT=1 tests/interop/run.sh $(B)/asan
	@$(MAKE) --no-print-directory clang-check
	@$(MAKE) --no-print-directory fuzz-replay
	@echo "twine: all checks passed"

# Every source must also be warning-free under clang.
clang-check:
	@if command -v clang >/dev/null; then \
	  for f in $(CORE_SRC) $(BACKENDS:%=reactors/%.c) examples/*.c tests/*.c tests/interop/*.c; do \
	    clang $(BASE) -O2 -fsyntax-only $$f || exit 1; done; \
	  clang $(BASE) -Itests/kqueue -fsyntax-only reactors/kqueue.c tests/kqueue/kqueue_emu.c; \
	  echo "twine: clang -Werror clean"; \
	else echo "twine: clang not installed, clang build skipped"; fi

# ---- fuzzing -------------------------------------------------------------------
# One libFuzzer target per parser (clang, ASan+UBSan): tests/fuzz/fuzz_NAME.c,
# seeds in tests/fuzz/corpus/NAME/.  `make fuzz` runs each for FUZZ_SECONDS;
# `make check` replays the committed corpus.

FUZZERS      := $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

$(B)/fuzz/%: tests/fuzz/%.c $(CORE_SRC) reactors/$(DEFAULT_BACKEND).c \
		$(wildcard core/*.h transports/*.h protocols/*.h tests/fuzz/*.h)
	@mkdir -p $(@D)
	clang $(BASE) $(FUZZ_FLAGS) -o $@ $< $(CORE_SRC) reactors/$(DEFAULT_BACKEND).c

fuzz: deps-check
	@$(MAKE) --no-print-directory $(FUZZERS:%=$(B)/fuzz/%)
	@for f in $(FUZZERS); do n=$${f#fuzz_}; mkdir -p $(B)/fuzz/corpus-$$n; \
	  echo "twine: fuzzing $$n for $(FUZZ_SECONDS) s"; \
	  $(B)/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    $(B)/fuzz/corpus-$$n tests/fuzz/corpus/$$n 2>&1 | \
	    grep -E 'stat::number_of_executed_units|stat::new_units_added|ERROR|SUMMARY' || exit 1; \
	done

fuzz-replay: $(FUZZERS:%=$(B)/fuzz/%)
	@for f in $(FUZZERS); do n=$${f#fuzz_}; \
	  $(B)/fuzz/$$f -runs=0 tests/fuzz/corpus/$$n >$(B)/fuzz/$$f.log 2>&1 || \
	    { tail -n 30 $(B)/fuzz/$$f.log; echo "FAIL  fuzz corpus: $$n"; exit 1; }; \
	  echo "PASS  fuzz corpus: $$n ($$(ls tests/fuzz/corpus/$$n | wc -l) inputs)"; done

# ---- benchmarks -----------------------------------------------------------------

bench: deps-bench
	@$(MAKE) --no-print-directory $(REL)/lib/libtwine.a $(REL)/lib/libtwine-default.a
	@tests/bench/run.sh $(REL)

# ---- install ------------------------------------------------------------------

install: all
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/twine
	install -m 644 $(PUBLIC_H) $(DESTDIR)$(INCLUDEDIR)/twine/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	for l in $(LIBNAMES); do \
	  install -m 755 $(REL)/lib/lib$$l.so.$(VERSION) $(DESTDIR)$(LIBDIR)/; \
	  ln -sf lib$$l.so.$(VERSION) $(DESTDIR)$(LIBDIR)/lib$$l.so.$(SOVERSION); \
	  ln -sf lib$$l.so.$(VERSION) $(DESTDIR)$(LIBDIR)/lib$$l.so; done
	install -m 644 $(PCFILES) $(DESTDIR)$(LIBDIR)/pkgconfig/

uninstall:
	rm -rf $(DESTDIR)$(INCLUDEDIR)/twine
	for l in $(LIBNAMES); do rm -f $(DESTDIR)$(LIBDIR)/lib$$l.* \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/$$l.pc; done

# ---- dependencies ---------------------------------------------------------------

deps-build:
	@.ci/deps build
deps-check:
	@.ci/deps check
deps-bench:
	@.ci/deps bench

clean:
	rm -rf $(B)

.PHONY: all libs run check check-run clang-check fuzz fuzz-replay bench install uninstall clean deps-build deps-check deps-bench
.SECONDARY:
.DELETE_ON_ERROR:

-include $(shell find $(B) -name '*.d' 2>/dev/null)
