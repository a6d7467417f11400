# bash completion for fieldsync
# Load it in the current shell:   source <(fieldsync completion bash)
# or for every shell:             fieldsync completion bash > /etc/bash_completion.d/fieldsync
# fieldsync itself lists the candidates (urfave/cli's --generate-bash-completion).
_fieldsync_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  local opts
  if [[ "$cur" == -* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -F _fieldsync_complete fieldsync
