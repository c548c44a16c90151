#!/bin/bash
# certhook drop-in hook: tell the certhook audit server about renewed certificates.
#
# Install: `certhook install-hook` (or copy this file, mode 0755, into
# /etc/letsencrypt/renewal-hooks/deploy/): certbot runs it after each renewal,
# with RENEWED_LINEAGE and RENEWED_DOMAINS set. `certhook install-hook --post`
# puts it into renewal-hooks/post/ as well: there it runs once per `certbot
# renew` and reports FAILED_DOMAINS (certbot 2.7.0 and later), leaving
# renewals to the deploy copy.
#
# It runs `certhook hook`: the certhook that installed it (install-hook writes
# its absolute path below, so that it is found whatever PATH certbot runs
# hooks with: cron and systemd give /usr/sbin:/usr/bin:/sbin:/bin), else
# `certhook` on PATH, else `python3 -m certhook`. Without any of them, plain
# bash submits the renewal itself: `command add domain ... port ... protocol
# ... lineage ... fingerprint ... event ... client bash apikey KEY` over
# /dev/tcp, to the first tcp:// server of [client] server in
# /etc/certhook/certhook.conf (or CERTHOOK_CONFIG, CERTHOOK_SERVER), with the
# key from api_key / api_key_file (or CERTHOOK_API_KEY) and the lineage's
# ports from [ports] of the same file. A line that is not answered "ok" waits
# in the spool directory and is sent again on the next run, or by
# `certhook flush`. docs/client.md says what the bash client covers.
#
# It never fails certbot: whatever happens, it exits 0 within its deadline
# ([client] deadline, default 10 seconds), with at most one warning line.

# The certhook that installed this copy (`certhook install-hook` writes it here).
certhook_installed=()

# Every protocol name a [ports] entry may carry, with its default port: the
# table of certhook.probe.starttls (tests/test_hook_dropin.py holds them equal).
certhook_protocols="tls=443 smtp=25 submission=587 lmtp=24 ftp=21 nntp=119 pop3=110 imap=143 sieve=4190 ldap=389 xmpp=5222 xmpp-server=5269 postgres=5432 mysql=3306"

# Deploy or post hook: where the file is installed says. Not the environment:
# certbot sets RENEWED_LINEAGE in its own process before running a deploy hook
# (certbot/_internal/hooks.py), so the post hooks it runs later inherit it.
case "$(basename "$(dirname "$0")")" in
    post) CERTHOOK_KIND=post ;;
    *) CERTHOOK_KIND=deploy ;;
esac

trap 'exit 0' EXIT
umask 077

certhook_notes=()  # what went wrong, said in one warning line at the end

certhook_join() {
    local text="$1" part
    shift
    for part in "$@"; do text+="; $part"; done
    printf '%s' "$text"
}

certhook_warn() {
    local text="$*"
    if [ -n "${certhook_key:-}" ]; then
        text=${text//"$certhook_key"/***}
    fi
    text=${text//[$'\r\n\t']/ }
    printf 'certhook %s hook: warning: %s\n' "$CERTHOOK_KIND" "$text" >&2
}

# certhook's INI file as Python's configparser reads it (certhook/client/ini.py):
# [section] headers, `key = value` or `key: value` (keys case-insensitive),
# comment lines, continuation lines indented deeper than their key, [DEFAULT]
# for every section. Fills certhook_conf["SECTION.key"] for [client], [ports]
# and [DEFAULT].
certhook_read_conf() {
    local file="$1" section="" raw line key="" value lead indent=0
    [ -r "$file" ] || return 0
    while IFS= read -r raw || [ -n "$raw" ]; do
        raw=${raw%$'\r'}
        line=${raw#"${raw%%[![:space:]]*}"}
        lead=$((${#raw} - ${#line}))
        line=${line%"${line##*[![:space:]]}"}
        case "$line" in '' | '#'* | ';'*) continue ;; esac
        if [ -n "$key" ] && [ "$lead" -gt "$indent" ]; then
            certhook_conf["$section.$key"]+=$'\n'$line  # a continuation line
            continue
        fi
        key=""
        case "$line" in
            '['*']'*) section=${line#[}; section=${section%]*}; continue ;;
            *[=:]*) ;;
            *) continue ;;
        esac
        case "$section" in client | ports | DEFAULT) ;; *) continue ;; esac
        key=${line%%[=:]*}
        value=${line#*[=:]}
        key=${key%"${key##*[![:space:]]}"}
        key=${key,,}
        value=${value#"${value%%[![:space:]]*}"}
        indent=$lead
        certhook_conf["$section.$key"]=$value
    done <"$file"
}

# A [client] (else [DEFAULT]) value.
certhook_client() {
    local key="client.$1"
    [ -n "${certhook_conf[$key]+set}" ] || key="DEFAULT.$1"
    printf '%s' "${certhook_conf[$key]:-}"
}

# The protocol words for a lineage's [ports] line, as certhook.probe.targets
# reads it: PORT, PORT/PROTOCOL or PROTOCOL, separated by commas or blanks;
# the protocol of a bare port is the STARTTLS protocol whose default port it
# is, else tls; 443/tls alone is left out (no port means 443). Sets
# certhook_port_words; on a bad entry, certhook_notes says so and the lineage
# is reported without ports, as certhook hook does.
certhook_ports() {
    local lineage="$1" conf="$2" key value entry port proto pairs=() words=() pair row known=""
    certhook_port_words=""
    key="ports.${lineage,,}"
    [ -n "${certhook_conf[$key]+set}" ] || key="DEFAULT.${lineage,,}"
    [ -n "${certhook_conf[$key]+set}" ] || return 0
    value=${certhook_conf[$key]//,/ }
    read -r -d '' -a words <<<"$value"
    for entry in "${words[@]}"; do
        if [ "${entry#*/}" != "$entry" ]; then
            port=${entry%%/*} proto=${entry#*/}
        elif [ -n "$entry" ] && [ -z "${entry//[0-9]/}" ]; then
            port=$entry proto=tls
            for row in $certhook_protocols; do
                [ "${row#*=}" = "$((10#$port))" ] && proto=${row%%=*}
            done
        else
            port="" proto=$entry
            for row in $certhook_protocols; do
                [ "${row%%=*}" = "$proto" ] && port=${row#*=}
            done
        fi
        case " $certhook_protocols " in *" $proto="*) ;; *) port="" ;; esac
        while [ "${port:0:1}" = 0 ] && [ ${#port} -gt 1 ]; do port=${port:1}; done
        if [ -z "$port" ] || [ -n "${port//[0-9]/}" ] || [ ${#port} -gt 5 ] \
            || [ "$((10#$port))" -lt 1 ] || [ "$((10#$port))" -gt 65535 ]; then
            for row in $certhook_protocols; do known+="${known:+, }${row%%=*}"; done
            certhook_notes+=("$conf: [ports] $lineage: ${entry:0:40}: not PORT, PORT/PROTOCOL or PROTOCOL (protocols: $known); reporting $lineage without ports")
            return 0
        fi
        pair="$((10#$port))/$proto"
        case " ${pairs[*]} " in *" $pair "*) ;; *) pairs+=("$pair") ;; esac
    done
    [ "${pairs[*]}" = "443/tls" ] && return 0
    for pair in "${pairs[@]}"; do certhook_port_words+=" port ${pair%/*}"; done
    for pair in "${pairs[@]}"; do certhook_port_words+=" protocol ${pair#*/}"; done
}

certhook_new_id() {
    local id
    id=$(od -An -N8 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n')
    if [ ${#id} -ne 16 ]; then
        printf -v id '%04x%04x%04x%04x' $RANDOM $RANDOM $RANDOM $RANDOM
    fi
    printf '%s' "$id"
}

# SHA-256 of the DER of the first certificate in a PEM file (coreutils only).
certhook_fingerprint() {
    local pem="$1" line b64="" inside=0 sum
    command -v base64 >/dev/null 2>&1 && command -v sha256sum >/dev/null 2>&1 || return 1
    [ -r "$pem" ] || return 1
    while IFS= read -r line; do
        line=${line%$'\r'}
        case "$line" in
            '-----BEGIN CERTIFICATE-----') inside=1 ;;
            '-----END CERTIFICATE-----') [ $inside = 1 ] && break ;;
            *) [ $inside = 1 ] && b64+=$line ;;
        esac
    done <"$pem"
    [ -n "$b64" ] || return 1
    sum=$(printf '%s' "$b64" | base64 -d 2>/dev/null | sha256sum) || return 1
    printf '%s' "${sum%% *}"
}

# Request lines (without the key) for a list of domains, split so that each
# line, with " apikey KEY" and CRLF, stays within the protocol's 1,000 bytes.
certhook_lines() {
    local event="$1" lineage="$2" fingerprint="$3" domains="$4" ports="$5"
    local tail budget current="" domain list=()
    tail=$ports
    [ -n "$lineage" ] && tail+=" lineage $lineage"
    [ -n "$fingerprint" ] && tail+=" fingerprint $fingerprint"
    tail+=" event $event"
    # 1,000 bytes less CRLF, " apikey KEY", the tail, "command add", " id ID", " client bash"
    budget=$((1000 - 2 - 8 - ${#certhook_key} - ${#tail} - 11 - 20 - 12))
    read -r -a list <<<"$domains"
    for domain in "${list[@]}"; do
        if [ -n "$current" ] && [ $((${#current} + 8 + ${#domain})) -gt $budget ]; then
            certhook_lines_out+=("command add$current$tail id $(certhook_new_id) client bash")
            current=""
        fi
        current+=" domain $domain"
    done
    if [ -n "$current" ]; then
        certhook_lines_out+=("command add$current$tail id $(certhook_new_id) client bash")
    fi
}

# Runs under `timeout`: send each line of stdin with the key, print each answer.
certhook_send() {
    local host="$1" port="$2" step="$3" line reply
    exec 3<>"/dev/tcp/$host/$port" || exit 1
    while IFS= read -r line; do
        printf '%s apikey %s\r\n' "$line" "$CERTHOOK__KEY" >&3 || exit 1
        IFS= read -r -t "$step" reply <&3 || exit 1
        printf '%s\n' "${reply%$'\r'}"
    done
}

certhook_spool_line() {
    local line="$1" dir="$2" id stamp tmp
    id=${line##* id }
    id=${id%% *}
    stamp=$(date +%s%3N 2>/dev/null)
    case "$stamp" in *N | '') stamp="$(date +%s)000" ;; esac
    mkdir -p -m 700 "$dir" 2>/dev/null
    tmp="$dir/.tmp-$$-$RANDOM"
    if printf '%s\n' "$line" >"$tmp" 2>/dev/null && mv -f "$tmp" "$dir/$stamp-$id.line" 2>/dev/null; then
        return 0
    fi
    rm -f "$tmp" 2>/dev/null
    return 1
}

certhook_bash() {
    local certhook_server="" certhook_key="" certhook_key_file="" certhook_spool=""
    local certhook_deadline="" conf host="" port=10023 entry url lines=() files=() i
    local certhook_lines_out=() lock_ok=0 certhook_port_words=""
    local -A certhook_conf=()
    conf=${CERTHOOK_CONFIG:-/etc/certhook/certhook.conf}
    certhook_read_conf "$conf"
    certhook_server=$(certhook_client server)
    certhook_key=$(certhook_client api_key)
    certhook_key_file=$(certhook_client api_key_file)
    certhook_spool=$(certhook_client spool_dir)
    certhook_deadline=$(certhook_client deadline)
    if [ -n "$certhook_key_file" ]; then
        case "$certhook_key_file" in /*) ;; *) certhook_key_file="$(dirname "$conf")/$certhook_key_file" ;; esac
        IFS= read -r certhook_key <"$certhook_key_file" 2>/dev/null
    fi
    certhook_server=${CERTHOOK_SERVER:-$certhook_server}
    certhook_key=${CERTHOOK_API_KEY:-$certhook_key}
    certhook_key=${certhook_key//[[:space:]]/}
    certhook_spool=${CERTHOOK_SPOOL_DIR:-${certhook_spool:-/var/lib/certhook/spool}}
    case "$certhook_deadline" in '' | *[!0-9.]*) certhook_deadline=10 ;; esac

    # The first plain tcp:// (or scheme-less) server: bash speaks no TLS.
    IFS=, read -r -a lines <<<"$certhook_server"
    for entry in "${lines[@]}"; do
        entry=${entry//[[:space:]]/}
        case "$entry" in
            tcp://*) url=${entry#tcp://} ;;
            *://*) continue ;;
            '') continue ;;
            *) url=$entry ;;
        esac
        url=${url%/}
        if [ "${url:0:1}" = '[' ]; then
            host=${url#[}; host=${host%%]*}
            case "$url" in *]:*) port=${url##*]:} ;; esac
        else
            host=${url%%:*}
            case "$url" in *:*) port=${url##*:} ;; esac
        fi
        break
    done

    # What to report.
    local lineage="" fingerprint="" renewed=${RENEWED_DOMAINS:-} failed=${FAILED_DOMAINS:-}
    if [ "$CERTHOOK_KIND" = deploy ]; then
        if [ -n "${RENEWED_LINEAGE:-}" ]; then
            lineage=${RENEWED_LINEAGE%/}
            fingerprint=$(certhook_fingerprint "$lineage/cert.pem")
            lineage=${lineage##*/}
            certhook_ports "$lineage" "$conf"
        fi
        failed=""
    elif [ -x "$certhook_hookdir/../deploy/certhook.sh" ]; then
        renewed=""  # the deploy drop-in has reported each renewal already
    fi
    [ -n "$renewed" ] && certhook_lines deployed "$lineage" "$fingerprint" "$renewed" \
        "$certhook_port_words"
    [ -n "$failed" ] && certhook_lines failed "" "" "$failed" ""

    # Lines left in the spool by an earlier run go first (one sender at a time).
    lines=()
    if [ -d "$certhook_spool" ] && command -v flock >/dev/null 2>&1 \
        && { exec 9>>"$certhook_spool/.lock"; } 2>/dev/null && flock -n 9; then
        lock_ok=1
        for entry in "$certhook_spool"/*.line; do
            [ -f "$entry" ] || continue
            # One request line of at most 1,000 bytes, or the file is moved
            # aside (as certhook's spool does): it must not stop the others.
            url=""
            IFS= read -r -n 1001 url <"$entry" 2>/dev/null
            url=${url%$'\r'}
            if [ -z "$url" ] || [ ${#url} -gt 998 ] || [ "${url#command }" = "$url" ]; then
                local bad="$certhook_spool/corrupt/${entry##*/}"
                mkdir -p -m 700 "$certhook_spool/corrupt" 2>/dev/null
                if mv -f "$entry" "$bad" 2>/dev/null; then
                    certhook_notes+=("spool file ${entry##*/} is unreadable (not one request line); moved to $bad")
                else
                    certhook_notes+=("spool file $entry is unreadable (not one request line) and cannot be moved to $certhook_spool/corrupt")
                fi
                continue
            fi
            lines+=("$url")
            files+=("$entry")
        done
    fi
    lines+=("${certhook_lines_out[@]}")
    if [ ${#lines[@]} -eq 0 ]; then
        [ ${#certhook_notes[@]} -gt 0 ] && certhook_warn "$(certhook_join "${certhook_notes[@]}")"
        return 0
    fi

    local replies=() why=""
    if [ -z "$host" ]; then
        why="no tcp:// server configured for the bash client ([client] server in $conf, or CERTHOOK_SERVER)"
    elif [ -z "$certhook_key" ]; then
        why="no API key configured ([client] api_key in $conf, or CERTHOOK_API_KEY)"
    else
        local runner=()
        if command -v timeout >/dev/null 2>&1; then
            runner=(timeout -k 1 "$certhook_deadline")
        fi
        mapfile -t replies < <(printf '%s\n' "${lines[@]}" | CERTHOOK__KEY="$certhook_key" \
            "${runner[@]}" bash -c "$(declare -f certhook_send); certhook_send \"\$@\"" \
            certhook-send "$host" "$port" "$certhook_deadline" 2>/dev/null)
    fi

    local spooled=0 delivered=0 rejected=0 lost=0 reply
    for i in "${!lines[@]}"; do
        reply=${replies[$i]:-}
        if [ "${reply%% *}" = ok ]; then
            delivered=$((delivered + 1))
            [ "$i" -lt ${#files[@]} ] && rm -f "${files[$i]}"
            continue
        fi
        [ -n "$reply" ] && why="tcp://$host:$port answered: ${reply:0:200}"
        [ -z "$why" ] && why="tcp://$host:$port did not answer within ${certhook_deadline} s (refused, closed or timed out)"
        if [ "${reply#error syntax}" != "$reply" ]; then
            rejected=$((rejected + 1))
            if [ "$i" -lt ${#files[@]} ]; then
                mkdir -p -m 700 "$certhook_spool/rejected" 2>/dev/null
                mv -f "${files[$i]}" "$certhook_spool/rejected/" 2>/dev/null
            else
                certhook_spool_line "${lines[$i]}" "$certhook_spool/rejected" || lost=$((lost + 1))
            fi
        elif [ "$i" -ge ${#files[@]} ]; then
            if certhook_spool_line "${lines[$i]}" "$certhook_spool"; then
                spooled=$((spooled + 1))
            else
                lost=$((lost + 1))
            fi
        else
            spooled=$((spooled + 1))
        fi
    done
    if [ $((spooled + rejected + lost)) -gt 0 ]; then
        local summary="$((spooled + rejected + lost)) of ${#lines[@]} submissions not delivered ($why)"
        [ $spooled -gt 0 ] && summary+="; $spooled spooled in $certhook_spool"
        [ $rejected -gt 0 ] && summary+="; $rejected refused as malformed, kept in $certhook_spool/rejected"
        [ $lost -gt 0 ] && summary+="; $lost LOST: cannot write to $certhook_spool"
        certhook_notes+=("$summary")
    fi
    [ ${#certhook_notes[@]} -gt 0 ] && certhook_warn "$(certhook_join "${certhook_notes[@]}")"
    [ $lock_ok = 1 ] && exec 9>&-
    return 0
}

certhook_main() {
    local confdir=""
    certhook_hookdir=$(cd "$(dirname "$0")" 2>/dev/null && pwd)
    # Installed as CONFIG/renewal-hooks/KIND/certhook.sh: certbot's config dir.
    if [ "$(basename "$(dirname "$certhook_hookdir")")" = renewal-hooks ]; then
        confdir=$(dirname "$(dirname "$certhook_hookdir")")
    fi
    cd / || true  # so that python3 -m certhook does not import from certbot's cwd
    local args=(hook "--$CERTHOOK_KIND")
    [ -n "$confdir" ] && [ "$CERTHOOK_KIND" = post ] && args+=(--config-dir "$confdir")
    if [ -z "${CERTHOOK_BASH_ONLY:-}" ]; then
        if [ ${#certhook_installed[@]} -gt 0 ]; then
            if [ -x "${certhook_installed[0]}" ]; then
                "${certhook_installed[@]}" "${args[@]}"
                return 0
            fi
            certhook_notes+=("${certhook_installed[0]} (the certhook that installed this hook) is gone; run certhook install-hook again")
        fi
        if command -v certhook >/dev/null 2>&1; then
            certhook "${args[@]}"
            return 0
        fi
        if command -v python3 >/dev/null 2>&1 && python3 -c 'import certhook.cli' 2>/dev/null; then
            python3 -m certhook "${args[@]}"
            return 0
        fi
    fi
    certhook_bash
}

certhook_main "$@"
exit 0
