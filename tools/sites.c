/* sites.c — call sites of findings: symbolized stacks and the project's own frames. */
#include "sites.h"
#include "stacks.h"

#include <inttypes.h>
#include <string.h>

void site_stack(struct trace *tr, uint64_t stack_id, struct site_stack *out)
{
	const struct site_frame *fr;
	out->n = stack_frames(tr, stack_id, &fr, NULL, NULL);
	out->frames = (struct site_frame *)fr;
}

void site_sup_frames(const struct site_stack *st, struct as_sup_frame *fr)
{
	for (size_t i = 0; i < st->n; i++) {
		fr[i].function = st->frames[i].function;
		fr[i].module = st->frames[i].module;
	}
}

static const char *base_name(const char *path)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	return slash ? slash + 1 : path;
}

static int own_frame(const struct site_frame *f)
{
	return f->module ? as_frame_is_own(f->module) : f->function != NULL;
}

static int shim_frame(const struct site_frame *f)
{
	const char *b = base_name(f->module);
	return b && !strcmp(b, "libasyncshim.so");
}

size_t site_first_own(const struct site_stack *st)
{
	for (size_t i = 0; i < st->n; i++)
		if (own_frame(&st->frames[i]))
			return i;
	return st->n;
}

void site_frame_name(const struct site_frame *f, char *buf, size_t len)
{
	if (f->function && f->file && f->line > 0)
		snprintf(buf, len, "%s (%s:%d)", f->function, f->file, f->line);
	else if (f->function && f->module && f->module[0] == '[')
		snprintf(buf, len, "%s %s", f->function, f->module);
	else if (f->function)
		snprintf(buf, len, "%s [%s]", f->function, base_name(f->module ? f->module : "[unknown]"));
	else
		snprintf(buf, len, "%s+0x%" PRIx64, base_name(f->module ? f->module : "[unknown]"), f->offset);
}

/* A site label's frame: "slow_sleep loop.c:41", else as every report shows it. */
static void frame_short(const struct site_frame *f, char *buf, size_t len)
{
	if (f->function && f->file && f->line > 0)
		snprintf(buf, len, "%s %s:%d", f->function, base_name(f->file), f->line);
	else
		site_frame_name(f, buf, len);
}

void site_label(const struct site_stack *st, char *buf, size_t len)
{
	size_t i = site_first_own(st), shown = 0, used = 0;
	int own = i < st->n;
	buf[0] = '\0';
	if (!own)
		i = 0;
	for (; i < st->n && shown < SITE_FRAMES && used + 1 < len; i++) {
		const struct site_frame *f = &st->frames[i];
		if (own ? !own_frame(f) : shim_frame(f))
			continue;
		char one[512];
		frame_short(f, one, sizeof(one));
		int n = snprintf(buf + used, len - used, "%s%s", shown ? " < " : "", one);
		if (n < 0)
			break;
		used += (size_t)n;
		shown++;
	}
	if (used >= len)
		buf[len - 1] = '\0';
}

void site_frame_text(const struct site_frame *f, char *buf, size_t len)
{
	if (f->function && f->file && f->line > 0)
		snprintf(buf, len, "%s %s:%d (%s)", f->function, f->file, f->line, f->module ? f->module : "?");
	else
		site_frame_name(f, buf, len);
}
