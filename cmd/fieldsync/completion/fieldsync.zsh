#compdef fieldsync
# zsh completion for fieldsync
# Load it in the current shell:   source <(fieldsync completion zsh)
# or install it as _fieldsync in a directory of $fpath.
# fieldsync itself lists the candidates (urfave/cli's --generate-bash-completion;
# 0=zsh asks it for "name:description" pairs).
_fieldsync() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(env 0=zsh ${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(env 0=zsh ${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
if [[ "$funcstack[1]" == "_fieldsync" ]]; then
  _fieldsync "$@"
else
  compdef _fieldsync fieldsync
fi
