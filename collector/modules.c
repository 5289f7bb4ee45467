/* modules.c — the module map: every ELF object of the process with its
 * path, load bias, address range and build-id, written as "module" records
 * so stacks can be symbolized offline (tools/symbolize.c), after the process
 * is gone and on another machine (the build-id finds the debug files).
 *
 * All objects are found with dl_iterate_phdr when a trace file starts.
 * Later loads are noticed at each drain (glibc's dlpi_adds counter tells
 * whether anything was loaded: one callback call) and before every dlclose
 * (hooks/dl.c), so a library loaded and unloaded between two drains is
 * still recorded.  The vDSO has no file: its image (a few KiB) is written
 * with it, so time calls sampled in a stall get their names too.  dlopen
 * itself is not interposed: glibc takes dlopen's
 * return address as the caller whose RPATH/RUNPATH, $ORIGIN and namespace
 * apply, and a hook would make every dlopen look like the shim's own.
 *
 * dl_iterate_phdr runs its callback under the loader's lock; the callback
 * only copies into memory allocated beforehand (no malloc, no lock), so a
 * stall-sample handler that unwinds through dl_iterate_phdr on a thread
 * holding the malloc lock cannot deadlock against it. */
#include "stacks.h"
#include "../format/pack.h"

#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUILD_ID_MAX 64
#define VDSO_MAX (64 * 1024)          /* its image goes into the trace */

struct module {
	uint64_t base, start, end;        /* load bias; [start, end) mapped */
	uint64_t t_ns;                    /* first seen */
	unsigned char build_id[BUILD_ID_MAX];
	unsigned build_id_len;
	int gen;                          /* file generation it was written in */
	char *path;
};

/* dl_iterate_phdr's view, copied into preallocated space */
struct scratch {
	struct scan { uint64_t base, start, end; size_t name; unsigned char id[BUILD_ID_MAX]; unsigned id_len; } *v;
	size_t n, cap;
	char *names;
	size_t used, names_cap;
	int overflow;
	unsigned long long adds;
};

static struct as_lock mod_mutex = AS_LOCK_INIT;
static pid_t mod_pid;
static struct module *mods;
static size_t nmods, capmods;
static unsigned long long synced_adds = ~0ull;
static int file_gen;

static void build_id_of(struct dl_phdr_info *info, struct scan *s)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_NOTE)
			continue;
		const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
			const char *name = p + sizeof(*nh);
			const unsigned char *desc = (const unsigned char *)name + ((nh->n_namesz + 3) & ~3u);
			if ((const char *)desc + nh->n_descsz > end)
				break;
			if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && !memcmp(name, "GNU", 4) &&
			    nh->n_descsz && nh->n_descsz <= BUILD_ID_MAX) {
				memcpy(s->id, desc, nh->n_descsz);
				s->id_len = nh->n_descsz;
				return;
			}
			p = (const char *)desc + ((nh->n_descsz + 3) & ~3u);
		}
	}
}

static int scan_one(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct scratch *sc = arg;
	if (size >= offsetof(struct dl_phdr_info, dlpi_adds) + sizeof(info->dlpi_adds))
		sc->adds = info->dlpi_adds;
	const char *name = info->dlpi_name ? info->dlpi_name : "";
	size_t len = strlen(name) + 1;
	if (sc->n == sc->cap || sc->used + len > sc->names_cap) {
		sc->overflow = 1;
		return 1;
	}
	struct scan *s = &sc->v[sc->n];
	memset(s, 0, sizeof(*s));
	s->base = info->dlpi_addr;
	s->start = UINT64_MAX;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uint64_t a = info->dlpi_addr + ph->p_vaddr;
		s->start = a < s->start ? a : s->start;
		s->end = a + ph->p_memsz > s->end ? a + ph->p_memsz : s->end;
	}
	if (s->start >= s->end)
		return 0;                       /* nothing mapped */
	build_id_of(info, s);
	memcpy(sc->names + sc->used, name, len);
	s->name = sc->used;
	sc->used += len;
	sc->n++;
	return 0;
}

static int adds_only(struct dl_phdr_info *info, size_t size, void *arg)
{
	if (size >= offsetof(struct dl_phdr_info, dlpi_adds) + sizeof(info->dlpi_adds))
		*(unsigned long long *)arg = info->dlpi_adds;
	return 1;
}

/* The path to write: the main program has no name in the loader's list,
 * the vDSO has no file. */
static char *module_path(const char *name)
{
	char exe[4096];
	if (!name[0]) {
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		exe[n > 0 ? n : 0] = '\0';
		return strdup(exe);
	}
	if (!strchr(name, '/') && !strncmp(name, "linux-vdso", 10))
		return strdup("[vdso]");
	return strdup(name);
}

static void remember(const struct scan *s, const char *name)
{
	for (size_t i = 0; i < nmods; i++)
		if (mods[i].base == s->base && mods[i].start == s->start && mods[i].end == s->end &&
		    mods[i].build_id_len == s->id_len && !memcmp(mods[i].build_id, s->id, s->id_len))
			return;
	if (nmods == capmods) {
		size_t cap = capmods ? capmods * 2 : 64;
		struct module *p = realloc(mods, cap * sizeof(*p));
		if (!p)
			return;
		mods = p;
		capmods = cap;
	}
	struct module *m = &mods[nmods];
	memset(m, 0, sizeof(*m));
	if (!(m->path = module_path(name)))
		return;
	m->base = s->base;
	m->start = s->start;
	m->end = s->end;
	m->t_ns = as_mono_ns() - as_mono0;
	memcpy(m->build_id, s->id, s->id_len);
	m->build_id_len = s->id_len;
	m->gen = -1;
	nmods++;
}

/* Scan the loaded objects when something was loaded since the last scan. */
static void sync_locked(void)
{
	unsigned long long adds = 0;
	dl_iterate_phdr(adds_only, &adds);
	if (adds == synced_adds)
		return;
	struct scratch sc;
	memset(&sc, 0, sizeof(sc));
	for (size_t cap = 256; cap <= 65536; cap *= 4) {
		sc.v = malloc(cap * sizeof(*sc.v));
		sc.names = malloc(cap * 256);
		if (!sc.v || !sc.names)
			break;
		sc.cap = cap;
		sc.names_cap = cap * 256;
		sc.n = sc.used = 0;
		sc.overflow = 0;
		dl_iterate_phdr(scan_one, &sc);
		if (!sc.overflow)
			break;
		free(sc.v);
		free(sc.names);
		sc.v = NULL;
		sc.names = NULL;
	}
	if (sc.v && sc.names) {
		for (size_t i = 0; i < sc.n; i++)
			remember(&sc.v[i], sc.names + sc.v[i].name);
		synced_adds = sc.adds ? sc.adds : adds;
	}
	free(sc.v);
	free(sc.names);
}

/* A fork child inherits the table but maybe a lock held by a thread that
 * is gone; it is single-threaded when it first gets here. */
static void lock(void)
{
	if (mod_pid != getpid()) {
		as_lock_init(&mod_mutex);
		mod_pid = getpid();
	}
	as_lock(&mod_mutex);
}

void as_modules_sync(void)
{
	int saved = errno, busy = as_tls.busy;
	as_tls.busy = 1;
	lock();
	sync_locked();
	as_unlock(&mod_mutex);
	as_tls.busy = busy;
	errno = saved;
}

static void pack_module(msgpack_packer *pk, struct module *m)
{
	static const char hex[] = "0123456789abcdef";
	char id[2 * BUILD_ID_MAX + 1];
	for (unsigned i = 0; i < m->build_id_len; i++) {
		id[2 * i] = hex[m->build_id[i] >> 4];
		id[2 * i + 1] = hex[m->build_id[i] & 15];
	}
	id[2 * m->build_id_len] = '\0';
	int vdso = !strcmp(m->path, "[vdso]") && m->end - m->start <= VDSO_MAX;
	msgpack_pack_map(pk, vdso ? 8 : 7);
	as_pack_type(pk, AS_T_module);
	as_pack_key(pk, AS_K_path);
	as_pack_str(pk, m->path);
	as_pack_key(pk, AS_K_base);
	msgpack_pack_uint64(pk, m->base);
	as_pack_key(pk, AS_K_start);
	msgpack_pack_uint64(pk, m->start);
	as_pack_key(pk, AS_K_end);
	msgpack_pack_uint64(pk, m->end);
	as_pack_key(pk, AS_K_build_id);
	if (m->build_id_len)
		as_pack_str(pk, id);
	else
		msgpack_pack_nil(pk);
	as_pack_key(pk, AS_K_t);
	msgpack_pack_uint64(pk, m->t_ns);
	if (vdso) {
		as_pack_key(pk, AS_K_image);
		msgpack_pack_bin(pk, m->end - m->start);
		msgpack_pack_bin_body(pk, (const void *)(uintptr_t)m->start, m->end - m->start);
	}
	m->gen = file_gen;
}

static void pack_unwritten(msgpack_packer *pk)
{
	for (size_t i = 0; i < nmods; i++)
		if (mods[i].gen != file_gen)
			pack_module(pk, &mods[i]);
}

void as_modules_pack_new(msgpack_packer *pk)
{
	lock();
	sync_locked();
	pack_unwritten(pk);
	as_unlock(&mod_mutex);
}

/* collector/stacks.c calls this for a new file */
void as_modules_new_file(msgpack_packer *pk)
{
	lock();
	file_gen++;
	synced_adds = ~0ull;
	sync_locked();
	pack_unwritten(pk);
	as_unlock(&mod_mutex);
}
