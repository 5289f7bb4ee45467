/* symbolize.c — offline symbolization with elfutils (libdwfl).
 *
 * Every recorded module gets its own Dwfl, opened on first use, reporting
 * the file at the load bias the process had (dwfl_report_elf).  Function
 * names come from .symtab when the file has one (static functions too),
 * else .dynsym; file:line from DWARF, found in the file itself or in a
 * separate debug file by build-id under /usr/lib/debug/.build-id (libdwfl's
 * standard debuginfo search).  When the file at the recorded path is gone,
 * or is not the one that was loaded (its build-id differs: rebuilt since),
 * the separate debug file alone is used if present, so a trace can be read
 * on another machine that has only the debug files.  Otherwise the frames
 * of that module stay module+offset, and one warning names the module.
 * The vDSO ("[vdso]") has no file: its image comes with the trace.
 * ASYNCSHIM_DEBUG_DIR=DIR[:DIR...] adds roots searched before /usr/lib/debug
 * (each with a .build-id/ tree), for debug files kept elsewhere. */
#include "symbolize.h"

#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct sym_mod {
	char *path;
	uint64_t base, start, end;
	char build_id[129];     /* hex, "" = unknown */
	void *image;            /* the vDSO's bytes, from the trace */
	size_t image_len;
	int state;              /* 0 not tried, 1 open, -1 unusable */
	Dwfl *dwfl;
	Dwfl_Module *mod;
};

struct symbolizer {
	struct sym_mod *m;
	size_t n, cap;
	char **names;           /* function names without their symbol version */
	size_t nnames, capnames;
};

void sym_add_module(struct symbolizer *s, const char *path, uint64_t base, uint64_t start, uint64_t end,
		    const char *build_id_hex, const void *image, size_t image_len)
{
	if (!s || start >= end)
		return;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 32;
		struct sym_mod *p = realloc(s->m, cap * sizeof(*p));
		if (!p)
			return;
		s->m = p;
		s->cap = cap;
	}
	struct sym_mod *m = &s->m[s->n];
	memset(m, 0, sizeof(*m));
	if (!(m->path = strdup(path)))
		return;
	m->base = base;
	m->start = start;
	m->end = end;
	size_t len = build_id_hex ? strlen(build_id_hex) : 0;
	if (len < sizeof(m->build_id) && len % 2 == 0 && strspn(build_id_hex, "0123456789abcdef") == len)
		memcpy(m->build_id, build_id_hex, len + 1);
	if (image && image_len && (m->image = malloc(image_len))) {
		memcpy(m->image, image, image_len);
		m->image_len = image_len;
	}
	s->n++;
}

/* The build-id of an open ELF file as hex ("" when it has none). */
static void file_build_id(int fd, char *hex, size_t len)
{
	hex[0] = '\0';
	Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	const unsigned char *id;
	ssize_t n = e ? dwelf_elf_gnu_build_id(e, (const void **)&id) : -1;
	for (ssize_t i = 0; i < n && (size_t)(2 * i + 2) < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", id[i]);
	if (e)
		elf_end(e);
}

/* A regular file only: a trace is input and may name a FIFO or a device. */
static int open_regular(const char *path)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	return fd;
}

static char debug_path[8192] = ":.debug:/usr/lib/debug";   /* libdwfl's syntax */
static char *debug_path_p = debug_path;
static const Dwfl_Callbacks callbacks = {
	.find_elf = dwfl_build_id_find_elf,
	.find_debuginfo = dwfl_standard_find_debuginfo,
	.section_address = dwfl_offline_section_address,
	.debuginfo_path = &debug_path_p,
};

struct symbolizer *sym_new(void)
{
	const char *extra = getenv("ASYNCSHIM_DEBUG_DIR");
	if (extra && extra[0] == '/' && strlen(extra) < sizeof(debug_path) - 32)
		snprintf(debug_path, sizeof(debug_path), ":.debug:%s:/usr/lib/debug", extra);
	elf_version(EV_CURRENT);
	return calloc(1, sizeof(struct symbolizer));
}

/* The separate debug file of a build-id, in the first root that has it. */
static int open_debug_file(const char *build_id, char *path, size_t len)
{
	const char *p = debug_path;
	while (*p) {
		size_t n = strcspn(p, ":");
		if (n && p[0] == '/') {
			snprintf(path, len, "%.*s/.build-id/%.2s/%s.debug", (int)n, p, build_id, build_id + 2);
			int fd = open_regular(path);
			if (fd >= 0)
				return fd;
		}
		p += n + (p[n] == ':');
	}
	return -1;
}

/* The vDSO's image from the trace, as a file libdwfl can read. */
static int open_image(const struct sym_mod *m)
{
	int fd = memfd_create("vdso", MFD_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t off = 0;
	while (off < m->image_len) {
		ssize_t n = write(fd, (const char *)m->image + off, m->image_len - off);
		if (n <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	return fd;
}

static int open_module(struct sym_mod *m)
{
	char why[512] = "", path[4096];
	snprintf(path, sizeof(path), "%s", m->path);
	if (m->path[0] == '[' && !m->image)
		return -1;                      /* [vdso] without its image: no file */
	int fd = m->image ? open_image(m) : open_regular(m->path);
	if (fd < 0) {
		snprintf(why, sizeof(why), "%s", strerror(errno));
	} else if (m->build_id[0]) {
		char id[129];
		file_build_id(fd, id, sizeof(id));
		if (strcmp(id, m->build_id)) {
			close(fd);
			fd = -1;
			snprintf(why, sizeof(why), "not the file that was loaded: build-id differs");
		}
	}
	if (fd < 0 && m->build_id[0])
		fd = open_debug_file(m->build_id, path, sizeof(path));
	if (fd < 0) {
		fprintf(stderr, "asyncshim: cannot read module %s (%s); its frames are shown as module+offset\n",
			m->path, why);
		return -1;
	}
	const char *slash = strrchr(m->path, '/');
	m->dwfl = dwfl_begin(&callbacks);
	if (m->dwfl) {
		dwfl_report_begin(m->dwfl);
		m->mod = dwfl_report_elf(m->dwfl, slash ? slash + 1 : m->path, path, fd, m->base, false);
		dwfl_report_end(m->dwfl, NULL, NULL);
	} else {
		close(fd);
	}
	if (!m->mod) {
		fprintf(stderr, "asyncshim: cannot read module %s (%s); its frames are shown as module+offset\n",
			m->path, dwfl_errmsg(-1));
		return -1;
	}
	return 0;
}

/* The module containing PC; the latest recorded wins (a range reused
 * after dlclose belongs to the library loaded last). */
static struct sym_mod *find(struct symbolizer *s, uint64_t pc)
{
	for (size_t i = s->n; i-- > 0;)
		if (pc >= s->m[i].start && pc < s->m[i].end)
			return &s->m[i];
	return NULL;
}

/* "__libc_start_main@@GLIBC_2.34" is __libc_start_main to a reader. */
static const char *unversioned(struct symbolizer *s, const char *name)
{
	const char *at = name ? strchr(name, '@') : NULL;
	if (!at || at == name)
		return name;
	for (size_t i = 0; i < s->nnames; i++)
		if (!strncmp(s->names[i], name, (size_t)(at - name)) && !s->names[i][at - name])
			return s->names[i];
	if (s->nnames == s->capnames) {
		size_t cap = s->capnames ? s->capnames * 2 : 16;
		char **p = realloc(s->names, cap * sizeof(*p));
		if (!p)
			return name;
		s->names = p;
		s->capnames = cap;
	}
	char *copy = strndup(name, (size_t)(at - name));
	if (!copy)
		return name;
	s->names[s->nnames++] = copy;
	return copy;
}

void sym_lookup(struct symbolizer *s, uint64_t pc, int exact, struct sym_frame *f)
{
	memset(f, 0, sizeof(*f));
	struct sym_mod *m = s ? find(s, pc) : NULL;
	if (!m) {
		f->module = "[unknown]";
		f->offset = pc;
		return;
	}
	f->module = m->path;
	f->offset = pc - m->base;
	if (!m->state)
		m->state = open_module(m) == 0 ? 1 : -1;
	if (m->state < 0 || (!exact && pc == 0))
		return;
	Dwarf_Addr a = exact ? pc : pc - 1;
	GElf_Off off;
	GElf_Sym sym;
	f->function = unversioned(s, dwfl_module_addrinfo(m->mod, a, &off, &sym, NULL, NULL, NULL));
	Dwfl_Line *l = dwfl_module_getsrc(m->mod, a);
	int line = 0;
	const char *file = l ? dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL) : NULL;
	if (file && line > 0) {
		f->file = file;
		f->line = line;
	}
}

void sym_free(struct symbolizer *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		if (s->m[i].dwfl)
			dwfl_end(s->m[i].dwfl);
		free(s->m[i].path);
		free(s->m[i].image);
	}
	for (size_t i = 0; i < s->nnames; i++)
		free(s->names[i]);
	free(s->names);
	free(s->m);
	free(s);
}
