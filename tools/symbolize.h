/* symbolize.h — code addresses of a trace to function, file and line, offline,
 * with elfutils' libdwfl (symbolize.c).  One symbolizer per trace: the
 * addresses belong to that process's module map (the "module" records). */
#ifndef ASYNCSHIM_SYMBOLIZE_H
#define ASYNCSHIM_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

struct symbolizer;

struct sym_frame {
	const char *function;   /* NULL when no symbol covers the address */
	const char *module;     /* path as recorded; "[unknown]" outside every module */
	const char *file;       /* NULL without line information */
	int line;               /* 0 without line information */
	uint64_t offset;        /* address - module load bias (the file's vaddr) */
};

struct symbolizer *sym_new(void);
/* IMAGE: the module's bytes when it has no file (the vDSO), else NULL. */
void sym_add_module(struct symbolizer *s, const char *path, uint64_t base, uint64_t start, uint64_t end,
		    const char *build_id_hex, const void *image, size_t image_len);

/* EXACT: PC is an instruction address (frame 0); otherwise a return
 * address, looked up at PC - 1 so a call at the end of a function is not
 * blamed on the next one.  Strings live as long as the symbolizer.  A module
 * whose file cannot be read (or is not the one that was loaded) gives
 * module+offset frames and one warning on stderr naming it. */
void sym_lookup(struct symbolizer *s, uint64_t pc, int exact, struct sym_frame *out);

void sym_free(struct symbolizer *s);

#endif
