! Fortran 2008 interface to libsurrogate (surrogate.h) through ISO_C_BINDING.
module surrogate_mod
  use, intrinsic :: iso_c_binding, only: c_int, c_long, c_float, c_char, c_ptr, &
                                         c_null_char, c_associated, c_f_pointer, c_size_t
  implicit none
  private
  public :: surrogate_init, surrogate_eval, surrogate_finalize, surrogate_last_error, &
            surrogate_open, surrogate_error_message, SURROGATE_OK

  integer(c_int), parameter :: SURROGATE_OK = 0

  interface
    integer(c_int) function surrogate_init(dir) bind(C, name="surrogate_init")
      import :: c_int, c_char
      character(kind=c_char), dimension(*), intent(in) :: dir
    end function surrogate_init

    integer(c_int) function surrogate_eval(x, n_in, y, n_out) bind(C, name="surrogate_eval")
      import :: c_int, c_long, c_float
      real(c_float), dimension(*), intent(in) :: x
      integer(c_long), value, intent(in) :: n_in
      real(c_float), dimension(*), intent(out) :: y
      integer(c_long), value, intent(in) :: n_out
    end function surrogate_eval

    subroutine surrogate_finalize() bind(C, name="surrogate_finalize")
    end subroutine surrogate_finalize

    type(c_ptr) function surrogate_last_error() bind(C, name="surrogate_last_error")
      import :: c_ptr
    end function surrogate_last_error

    integer(c_size_t) function c_strlen(s) bind(C, name="strlen")
      import :: c_ptr, c_size_t
      type(c_ptr), value, intent(in) :: s
    end function c_strlen
  end interface

contains

  !> surrogate_init with a Fortran string (trailing blanks dropped, NUL appended).
  integer(c_int) function surrogate_open(dir) result(code)
    character(len=*), intent(in) :: dir
    code = surrogate_init(trim(dir) // c_null_char)
  end function surrogate_open

  !> The message of the last failed call as a Fortran string.
  function surrogate_error_message() result(message)
    character(len=:), allocatable :: message
    type(c_ptr) :: p
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n
    p = surrogate_last_error()
    if (.not. c_associated(p)) then
      message = ""
      return
    end if
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate (character(len=n) :: message)
    do i = 1, n
      message(i:i) = chars(i)
    end do
  end function surrogate_error_message

end module surrogate_mod
