/*
 * NAME
 *	milter_reply - a stage's outcome as libmilter's answer to the MTA
 * DESCRIPTION
 *	The one table of milter mode (posternd's is proxy/smtp_chain.c):
 *
 *	  verdict       stage answer                     at end of message
 *	  next, accept  SMFIS_CONTINUE                   the edits, SMFIS_CONTINUE
 *	  tempfail      our reply (4xx), SMFIS_TEMPFAIL  the same
 *	  reject        our reply (5xx), SMFIS_REJECT    the same
 *	  discard       (a reject before end of data)    SMFIS_DISCARD
 *	  quarantine    (marked, goes on)                the edits, smfi_quarantine
 *	  disconnect    421 4.7.0, SMFIS_TEMPFAIL (the MTA closes the session)
 *
 *	At connect a reject is 554 and a tempfail 421, as posternd answers
 *	them. "Our reply" is the code, enhanced code and text the plugin set
 *	(or the chain's default), given to smfi_setreply unchanged.
 *
 *	The edits at end of message, in this order: the fields to remove
 *	(forged Authentication-Results with our authserv-id, X-Postern-*, a
 *	plugin's remove_header) with smfi_chgheader(name, index, NULL), highest
 *	index first; then the fields to add, inserted at index 0 from the last
 *	to the first, so that they end up at the top in posternd's order
 *	(Authentication-Results first); values without CRs, and with a leading
 *	space when SMFIP_HDR_LEADSPC was negotiated (the MTA then adds none);
 *	then smfi_quarantine when a plugin quarantined the message (Postfix
 *	puts it on hold), with the X-Postern-Quarantine field added as well,
 *	as posternd adds it. A failed edit is a 451: the message must not go on
 *	without its Authentication-Results.
 * DIAGNOSTICS
 *	SID milter edit=insheader|chgheader|quarantine name=N error=failed action=tempfail
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmilter/mfapi.h>

#include "common/log.h"
#include "milter_int.h"

/* setreply - code, enhanced code, text */
static void setreply(SMFICTX *ctx, int code, const char *esc, const char *text)
{
	char rcode[8];

	snprintf(rcode, sizeof(rcode), "%d", code);
	if (smfi_setreply(ctx, rcode, esc && *esc ? (char *)esc : NULL, (char *)text) != MI_SUCCESS)
		smfi_setreply(ctx, rcode, NULL, NULL);
}

int px_mreply_tempfail(SMFICTX *ctx, const char *why)
{
	(void)why;
	setreply(ctx, 451, "4.3.0", "Temporary failure in a filter; try again later");
	return SMFIS_TEMPFAIL;
}

int px_mreply_stage(SMFICTX *ctx, struct px_mconn *c, enum px_stage st,
		    const struct px_stage_outcome *o)
{
	int code = o->code;
	const char *esc = o->esc;

	(void)c;
	switch (o->verdict) {
	case PX_NEXT:
	case PX_ACCEPT:
	case PX_QUARANTINE:
		return SMFIS_CONTINUE;
	case PX_DISCONNECT:
		setreply(ctx, 421, "4.7.0", o->text);
		return SMFIS_TEMPFAIL;
	case PX_TEMPFAIL:
		if (st == PX_STAGE_CONNECT) {
			code = 421;
			esc = "4.7.0";
		}
		setreply(ctx, code / 100 == 4 ? code : 451, esc, o->text);
		return SMFIS_TEMPFAIL;
	default:
		if (st == PX_STAGE_CONNECT) {
			code = 554;
			esc = esc[0] == '5' ? esc : "5.7.1";
		}
		setreply(ctx, code / 100 == 5 ? code : 550, esc, o->text);
		return SMFIS_REJECT;
	}
}

/* edit_failed - log, and answer 451 */
static int edit_failed(SMFICTX *ctx, struct px_mconn *c, const char *what, const char *name)
{
	px_log(PX_LOG_ERR, c->sid, "milter edit=%s name=%s error=failed action=tempfail "
	       "queue_id=%s", what, name, c->f.queue_id[0] ? c->f.queue_id : "-");
	return px_mreply_tempfail(ctx, what);
}

/* insert - one field at the top */
static int insert(SMFICTX *ctx, struct px_mconn *c, const struct px_medit *e)
{
	char *v = NULL;
	int rc;

	if (!c->leadspc)
		return smfi_insheader(ctx, 0, e->name, e->value);
	if (asprintf(&v, " %s", e->value) < 0)
		return MI_FAILURE;
	rc = smfi_insheader(ctx, 0, e->name, v);
	free(v);
	return rc;
}

int px_mreply_eom(SMFICTX *ctx, struct px_mconn *c, const struct px_stage_outcome *o,
		  const struct px_medits *e)
{
	size_t i;

	if (o->verdict == PX_DISCARD)
		return SMFIS_DISCARD;
	if (o->verdict != PX_NEXT && o->verdict != PX_ACCEPT && o->verdict != PX_QUARANTINE)
		return px_mreply_stage(ctx, c, PX_STAGE_DATA_END, o);
	for (i = 0; i < e->ndel; i++)
		if (smfi_chgheader(ctx, e->del[i].name, e->del[i].index, NULL) != MI_SUCCESS)
			return edit_failed(ctx, c, "chgheader", e->del[i].name);
	for (i = e->nadd; i-- > 0;)
		if (insert(ctx, c, &e->add[i]) != MI_SUCCESS)
			return edit_failed(ctx, c, "insheader", e->add[i].name);
	if (e->quarantine[0] && (c->actions & SMFIF_QUARANTINE) &&
	    smfi_quarantine(ctx, (char *)e->quarantine) != MI_SUCCESS)
		return edit_failed(ctx, c, "quarantine", "-");
	return SMFIS_CONTINUE;
}
