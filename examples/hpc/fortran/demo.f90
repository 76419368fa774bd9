! Evaluate an exported surrogate on a sine wave and print the result, one value a line.
!
!   demo EXPORT_DIR N_IN N_OUT
!
! N_IN and N_OUT are the sizes in EXPORT_DIR/metadata.json (products of input_shape and
! output_shape). A failed call prints the library's message and stops with status 1.
program demo
  use, intrinsic :: iso_c_binding, only: c_int, c_long, c_float
  use, intrinsic :: iso_fortran_env, only: error_unit, output_unit
  use surrogate_mod
  implicit none
  character(len=4096) :: dir, arg
  integer(c_long) :: n_in, n_out, i
  integer(c_int) :: code
  real(c_float), allocatable :: x(:), y(:)
  double precision, parameter :: pi = 4.0d0 * atan(1.0d0)

  if (command_argument_count() /= 3) then
    write (error_unit, '(a)') "usage: demo EXPORT_DIR N_IN N_OUT"
    stop 2
  end if
  call get_command_argument(1, dir)
  call get_command_argument(2, arg)
  read (arg, *) n_in
  call get_command_argument(3, arg)
  read (arg, *) n_out

  ! x(i) = sin(2 pi (i-1) / n_in), computed in double precision, stored as float
  allocate (x(n_in), y(n_out))
  do i = 1, n_in
    x(i) = real(sin(2.0d0 * pi * dble(i - 1) / dble(n_in)), c_float)
  end do

  code = surrogate_open(dir)
  if (code /= SURROGATE_OK) call fail("surrogate_init", code)
  code = surrogate_eval(x, n_in, y, n_out)
  if (code /= SURROGATE_OK) call fail("surrogate_eval", code)
  do i = 1, n_out
    write (output_unit, '(es17.9e3)') y(i)
  end do
  call surrogate_finalize()

contains

  subroutine fail(what, code)
    character(len=*), intent(in) :: what
    integer(c_int), intent(in) :: code
    write (error_unit, '(a, " failed (code ", i0, "): ", a)') what, code, surrogate_error_message()
    stop 1
  end subroutine fail

end program demo
