/* suppress.c — parse suppression files and match findings against them.
 * See suppress.h for the format.  Globs are fnmatch(3) patterns. */
#include "suppress.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUP_LINE_MAX 4096

static char *dup_n(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static void rule_free(struct as_sup_rule *r)
{
	free(r->fun);
	free(r->mod);
	free(r->call);
	free(r->text);
}

/* Cut a trailing comment ("#" at the start or after blank space) and the
 * surrounding blanks; returns the rule text, possibly empty. */
static char *strip(char *line)
{
	for (char *p = line; *p; p++)
		if (*p == '#' && (p == line || *(p - 1) == ' ' || *(p - 1) == '\t')) {
			*p = '\0';
			break;
		}
	line[strcspn(line, "\r\n")] = '\0';
	while (*line == ' ' || *line == '\t')
		line++;
	size_t n = strlen(line);
	while (n && (line[n - 1] == ' ' || line[n - 1] == '\t'))
		line[--n] = '\0';
	return line;
}

/* One "key:glob" token into the rule; returns NULL or what is wrong. */
static const char *parse_token(struct as_sup_rule *r, const char *tok, size_t len)
{
	static const char *const keys[] = { "fun", "mod", "call" };
	char **slots[] = { &r->fun, &r->mod, &r->call };
	const char *colon = memchr(tok, ':', len);
	if (!colon)
		return "want fun:GLOB, mod:GLOB or call:GLOB";
	size_t klen = (size_t)(colon - tok);
	for (size_t i = 0; i < 3; i++) {
		if (strlen(keys[i]) != klen || memcmp(keys[i], tok, klen))
			continue;
		if (*slots[i])
			return "key given twice";
		if (len == klen + 1)
			return "empty glob";
		*slots[i] = dup_n(colon + 1, len - klen - 1);
		return *slots[i] ? NULL : "out of memory";
	}
	return "unknown key (want fun:, mod: or call:)";
}

static const char *parse_rule(struct as_sup_rule *r, const char *text)
{
	const char *p = text, *why = NULL;
	while (*p && !why) {
		size_t len = strcspn(p, " \t");
		why = parse_token(r, p, len);
		p += len;
		p += strspn(p, " \t");
	}
	if (!why && !r->fun && !r->mod)
		why = "a rule needs fun:GLOB or mod:GLOB";
	return why;
}

static int add_rule(struct as_sup *s, struct as_sup_rule *r)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct as_sup_rule *p = realloc(s->rules, cap * sizeof(*p));
		if (!p)
			return -1;
		s->rules = p;
		s->cap = cap;
	}
	s->rules[s->n++] = *r;
	return 0;
}

static const char *add_file(struct as_sup *s, const char *path)
{
	char **p = realloc(s->files, (s->nfiles + 1) * sizeof(*p));
	if (!p)
		return NULL;
	s->files = p;
	s->files[s->nfiles] = dup_n(path, strlen(path));
	return s->files[s->nfiles] ? s->files[s->nfiles++] : NULL;
}

/* One line of PATH (LINE, without its newline): 0, or -1 with ERR. */
static int parse_line(struct as_sup *s, const char *file, unsigned line, char *buf, char *err, size_t errlen)
{
	char *text = strip(buf);
	if (!*text)
		return 0;
	struct as_sup_rule r = { .file = file, .line = line };
	const char *why = parse_rule(&r, text);
	if (!why && !(r.text = dup_n(text, strlen(text))))
		why = "out of memory";
	if (!why && add_rule(s, &r) != 0)
		why = "out of memory";
	if (!why)
		return 0;
	snprintf(err, errlen, "%s:%u: bad suppression '%.200s': %s", file, line, text, why);
	rule_free(&r);
	return -1;
}

/* Lines longer than SUP_LINE_MAX - 1 bytes, newline included, are refused
 * (what a fgets of that buffer size could not hold). */
int as_sup_parse(struct as_sup *s, const char *path, const char *text, size_t len, char *err, size_t errlen)
{
	const char *file = add_file(s, path);
	if (!file) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	char buf[SUP_LINE_MAX];
	unsigned line = 0;
	size_t at = 0;
	while (at < len) {
		const char *nl = memchr(text + at, '\n', len - at);
		size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
		line++;
		if (n + (nl ? 1 : 0) > SUP_LINE_MAX - 1) {
			snprintf(err, errlen, "%s:%u: line too long", path, line);
			return -1;
		}
		memcpy(buf, text + at, n);
		buf[n] = '\0';
		if (parse_line(s, file, line, buf, err, errlen) != 0)
			return -1;
		at += n + (nl ? 1 : 0);
	}
	return 0;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* A module glob with a '/' is matched against the full path, one without
 * against the file name: "libc.so.*" or "/usr/lib/x86_64-linux-gnu/libc.so.*".  */
static int module_matches(const char *glob, const char *module)
{
	if (!module)
		return 0;
	return fnmatch(glob, strchr(glob, '/') ? module : base_name(module), 0) == 0;
}

/* The compiler's clones of a function (burn_cpu.isra.0, f.constprop.0,
 * f.part.0, f.cold, and "f(int) [clone .isra.0]" once demangled) answer to
 * the function's own name too: that is the name in the source. */
static int function_matches(const char *glob, const char *name)
{
	if (!name)
		return 0;
	if (fnmatch(glob, name, 0) == 0)
		return 1;
	const char *cut = strstr(name, " [clone ");
	if (!cut) {
		cut = strchr(name, '.');
		if (cut && (cut == name || strpbrk(name, "(:<") != NULL))
			cut = NULL;
	}
	if (!cut || (size_t)(cut - name) >= 1024)
		return 0;
	char base[1024];
	memcpy(base, name, (size_t)(cut - name));
	base[cut - name] = '\0';
	return fnmatch(glob, base, 0) == 0;
}

static int frame_matches(const struct as_sup_rule *r, const struct as_sup_frame *f)
{
	if (r->fun && !function_matches(r->fun, f->function))
		return 0;
	if (r->mod && !module_matches(r->mod, f->module))
		return 0;
	return 1;
}

struct as_sup_rule *as_sup_match(const struct as_sup *s, const char *call,
				 const struct as_sup_frame *frames, size_t nframes)
{
	for (size_t i = 0; i < s->n; i++) {
		struct as_sup_rule *r = &s->rules[i];
		if (r->call && (!call || fnmatch(r->call, call, 0) != 0))
			continue;
		for (size_t j = 0; j < nframes; j++)
			if (frame_matches(r, &frames[j]))
				return r;
	}
	return NULL;
}

void as_sup_free(struct as_sup *s)
{
	for (size_t i = 0; i < s->n; i++)
		rule_free(&s->rules[i]);
	for (size_t i = 0; i < s->nfiles; i++)
		free(s->files[i]);
	free(s->rules);
	free(s->files);
	memset(s, 0, sizeof(*s));
}

int as_frame_is_own(const char *module)
{
	static const char *const system_dirs[] = { "/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/libexec/" };
	const char *b = base_name(module);
	if (!strcmp(b, "libasyncshim.so") || !strncmp(b, "libc.so", 7) || !strncmp(b, "ld-linux", 8))
		return 0;
	for (size_t i = 0; i < sizeof(system_dirs) / sizeof(system_dirs[0]); i++)
		if (!strncmp(module, system_dirs[i], strlen(system_dirs[i])))
			return 0;
	return 1;
}
