# bash completion for netevctl(1)
# shellcheck shell=bash

_netevctl() {
    local cur prev cmd i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    local commands="status interfaces interface routes rules events history hooks filters metrics audit reload test validate"
    local states="off no-carrier dormant carrier degraded routable routes configured configuring activated disconnected manager degraded-carrier enslaved missing pending initialized unmanaged failed linger unknown unavailable prepare config need-auth ip-config ip-check secondaries deactivating"
    case $prev in
    --socket)
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return
        ;;
    --timeout | --limit | --where | --since | --until)
        return
        ;;
    --link)
        mapfile -t COMPREPLY < <(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur")
        return
        ;;
    --kind)
        if [[ " ${COMP_WORDS[*]} " == *" audit "* ]]; then
            mapfile -t COMPREPLY < <(compgen -W "state hook control reload policy audit" -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "startup state removed routes test lease" -- "$cur")
        fi
        return
        ;;
    --state)
        mapfile -t COMPREPLY < <(compgen -W "$states" -- "$cur")
        return
        ;;
    esac
    # The command is the first word that is not an option or its value.
    cmd=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        --socket | --timeout) ((i++)) ;;
        -*) ;;
        *)
            cmd=${COMP_WORDS[i]}
            break
            ;;
        esac
    done
    local words
    case $cmd in
    '') words="--socket --timeout --json --version --help $commands" ;;
    interface) words="--json $(ls /sys/class/net 2>/dev/null)" ;;
    events) words="--limit --link --kind --state --where --follow --json" ;;
    audit) words="--since --until --kind --link --limit --json" ;;
    history) words="--limit --link --json" ;;
    test) words="--state --link --dry-run --json" ;;
    validate)
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return
        ;;
    *) words="--json" ;;
    esac
    mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
}
complete -o filenames -F _netevctl netevctl
