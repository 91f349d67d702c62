#!/usr/bin/env bash
# Parse --name value / --name=value command-line options into shell variables.
#
# Source it after declaring the options with their defaults:
#     stage=1       # First stage to run.
#     . scripts/utils/parse_options.sh
# Only variables that already exist can be set (an unknown option is an error; names starting
# with "_" are private and never options); hyphens in option
# names map to underscores; an option whose default is true/false only takes true or false.
# --help (or -h) prints ${help_message} (if set) and the options declared before the line that
# sources this file, with their current values and trailing comments. Parsing stops at the first
# argument that does not start with "--" (or after "--"); the rest stays in "$@".

_po_caller="${BASH_SOURCE[1]:-$0}"

_po_help() {
    [ -n "${help_message:-}" ] && echo "${help_message}"
    echo "Options (default in brackets):"
    local line name comment
    while IFS= read -r line; do
        [[ "${line}" =~ ^[^#]*parse_options\.sh ]] && break
        [[ "${line}" =~ ^([A-Za-z_][A-Za-z0-9_]*)= ]] || continue
        name="${BASH_REMATCH[1]}"
        [[ "${name}" = help_message || "${name}" = _* ]] && continue
        comment=""
        [[ "${line}" =~ [[:space:]]#[[:space:]]?(.*)$ ]] && comment="${BASH_REMATCH[1]}"
        printf '  --%-24s [%s] %s\n' "${name}" "${!name-}" "${comment}"
    done < "${_po_caller}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h) _po_help; exit 0 ;;
        --) shift; break ;;
        --*=*) _po_name="${1%%=*}"; _po_value="${1#*=}"; shift ;;
        --*)
            _po_name="$1"
            if [ $# -lt 2 ]; then
                echo "$0: option $1 needs a value" 1>&2; exit 1
            fi
            _po_value="$2"; shift 2 ;;
        *) break ;;
    esac
    _po_name="${_po_name#--}"
    _po_name="${_po_name//-/_}"
    if ! [[ "${_po_name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || ! declare -p "${_po_name}" >/dev/null 2>&1 \
        || [ "${_po_name}" = help_message ] || [[ "${_po_name}" = _* ]]; then
        echo "$0: invalid option --${_po_name} (unknown; run with --help for the option list)" 1>&2
        exit 1
    fi
    case "${!_po_name}" in
        true|false)
            case "${_po_value}" in
                true|false) ;;
                *) echo "$0: option --${_po_name} takes true or false, not '${_po_value}'" 1>&2; exit 1 ;;
            esac ;;
    esac
    printf -v "${_po_name}" '%s' "${_po_value}"
done
unset _po_name _po_value _po_caller
true
