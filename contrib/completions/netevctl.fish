# fish completion for netevctl(1)
set -l commands status interfaces interface routes rules events history hooks filters metrics audit reload test validate
set -l states off no-carrier dormant carrier degraded routable routes configured configuring activated disconnected manager degraded-carrier enslaved missing pending initialized unmanaged failed linger unknown unavailable prepare config need-auth ip-config ip-check secondaries deactivating

function __netevctl_links
    path basename /sys/class/net/*
end

complete -c netevctl -f
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -l socket -r -F -d 'the control socket'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -l timeout -x -d 'seconds to wait for a whole reply'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -l version -d 'print the version and exit'
complete -c netevctl -l json -d 'print JSON'
complete -c netevctl -s h -l help -d 'print the flags'

complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a status -d "the daemon's version, uptime, configuration and counters"
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a interfaces -d 'every link with its state and addresses'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a interface -d 'one link in detail'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a routes -d 'the routes netevd mirrors'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a rules -d 'the policy routing rules netevd installed'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a events -d 'recent events, or new ones as they happen'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a history -d 'recent hook runs'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a hooks -d 'the hook directories and their files'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a filters -d 'the configured filters with their hit counts'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a metrics -d 'the metrics in the Prometheus text format'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a audit -d 'lines of the audit log'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a reload -d 'make the daemon reread its configuration'
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a test -d "run a state's hooks for a link now"
complete -c netevctl -n "not __fish_seen_subcommand_from $commands" -a validate -d 'check a configuration file'

complete -c netevctl -n "__fish_seen_subcommand_from interface" -a '(__netevctl_links)'
complete -c netevctl -n "__fish_seen_subcommand_from events history test audit" -l link -x -a '(__netevctl_links)' -d 'the link (name or index)'
complete -c netevctl -n "__fish_seen_subcommand_from events history audit" -l limit -x -d 'at most this many'
complete -c netevctl -n "__fish_seen_subcommand_from events" -l kind -x -a 'startup state removed routes test lease' -d 'only this kind'
complete -c netevctl -n "__fish_seen_subcommand_from events" -l where -x -d 'only events for which this condition holds'
complete -c netevctl -n "__fish_seen_subcommand_from audit" -l kind -x -a 'state hook control reload policy audit' -d 'only this kind'
complete -c netevctl -n "__fish_seen_subcommand_from audit" -l since -x -d 'from this time on'
complete -c netevctl -n "__fish_seen_subcommand_from audit" -l until -x -d 'up to this time'
complete -c netevctl -n "__fish_seen_subcommand_from events test" -l state -x -a "$states" -d 'hook directory'
complete -c netevctl -n "__fish_seen_subcommand_from events" -l follow -d 'wait for new events'
complete -c netevctl -n "__fish_seen_subcommand_from test" -l dry-run -d 'only show which hooks would run'
complete -c netevctl -n "__fish_seen_subcommand_from validate" -F
